"""`artgen bench` on the tiny models: the JSON result and its option checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from artgen.cli import app


def test_bench_quick_writes_json(runner: CliRunner, tmp_path: Path) -> None:
    args = ["bench", "--model", "tiny", "--quick", "--sizes", "32", "--cutn", "2"]
    args += ["--iterations", "1", "--warmup", "0", "--device", "cpu", "--output-dir", "results"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "results").glob("cpu-*.json")
    data = json.loads(written.read_text())
    assert data["device"] == "cpu" and data["torch_version"] == torch.__version__
    assert data["config"]["sizes"] == [32] and data["config"]["cutn"] == 2
    paths = [case["path"] for case in data["cases"]]
    assert paths == ["reference", "fast"]
    for case in data["cases"]:
        assert case["error"] is None and case["ms_per_iteration"] > 0
        assert case["peak_memory_bytes"] > 0
    (speedup,) = data["speedups"]
    expected = speedup["reference_ms"] / speedup["fast_ms"]
    assert speedup["size"] == 32 and speedup["speedup"] == pytest.approx(expected)
    assert "reference" in result.output and "fast" in result.output


def test_bench_rejects_bad_options(runner: CliRunner) -> None:
    result = runner.invoke(app, ["bench", "--sizes", "64,big"])
    assert result.exit_code == 2 and "--sizes" in result.output
    result = runner.invoke(app, ["bench", "--paths", "reference,warp"])
    assert result.exit_code == 2 and "unknown path 'warp'" in result.output


def test_bench_models_are_named_for_what_they_are(runner: CliRunner) -> None:
    result = runner.invoke(app, ["bench", "--model", "real"])
    assert result.exit_code == 2
    assert "--model 'real': choose random-f16 or tiny" in result.output
    assert "random-f16 (f16 16384 VQGAN + ViT-B-32, random weights)" in " ".join(
        runner.invoke(app, ["bench", "--help"]).output.split()
    )
