"""The `artgen` app: help, `python -m artgen`, serve and worker settings from flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artgen.api import server
from artgen.cli import app
from artgen.jobs import hosting


def test_help_shows_no_bool_labels_and_the_defaults(runner: CliRunner) -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "--help" in top.output
    for command in (["generate"], ["serve"], ["worker"], ["bench"], ["models", "list"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output and "list[str]" not in result.output, command
    assert "<bool>" not in top.output
    generate = runner.invoke(app, ["generate", "--help"]).output
    assert "--size W H" in generate and "(default 256 256)" in generate
    assert "--augment / --no-augment" in generate
    serve = runner.invoke(app, ["serve", "--help"]).output
    assert "(default ./artgen-data" in " ".join(serve.split())


def test_serve_flags_override_environment(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = []
    monkeypatch.setattr(server, "serve", seen.append)
    monkeypatch.setenv("ARTGEN_PORT", "9000")
    monkeypatch.setenv("ARTGEN_HOST", "0.0.0.0")
    args = ["serve", "--port", "8123", "--data-dir", str(tmp_path / "data"), "--model", "tiny"]
    args += ["--clip-model", "tiny", "--clip-model", "random_vit_b_32", "--no-worker"]
    args += ["--queue", "redis://localhost:6379/0", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.port, settings.host) == (8123, "0.0.0.0")
    assert settings.data_dir == tmp_path / "data" and settings.worker is False
    assert settings.resolved_clip_models == ["tiny", "random_vit_b_32"]
    assert settings.queue_url == "redis://localhost:6379/0" and settings.device == "cpu"


def test_worker_builds_settings_and_passes_the_exit_code(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr(hosting, "run_worker", lambda settings: seen.append(settings) or 3)
    args = ["worker", "--queue", "redis://gpu-queue:6379/1", "--device", "cpu", "--model", "tiny"]
    args += ["--batch-jobs", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    (settings,) = seen
    assert settings.queue_url == "redis://gpu-queue:6379/1" and settings.model == "tiny"
    assert settings.batch_jobs == 4
    assert settings.resolved_clip_models == ["tiny"]


def test_python_dash_m_artgen_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "artgen", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("generate", "models", "serve", "worker", "bench"):
        assert command in result.stdout
