"""benchmarks/bench_steering.py at a toy size: starts, side-by-side weights, table and JSON."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from artgen.models.demo import demo_dir

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_steering.py"


@pytest.fixture(scope="module")
def bench():
    name = "artgen_steering_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARK)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_starts_are_in_the_prompt_colours_and_differ(bench):
    circle = np.asarray(bench.start_picture("circle", "red", "blue", 0)).astype(int)
    blob = np.asarray(bench.start_picture("blob", "red", "blue", 0)).astype(int)
    for start in (circle, blob):
        assert np.abs(start[0, 0] - (30, 70, 220)).max() <= 13  # the blue background
        assert (np.abs(start - (220, 30, 30)).max(axis=2) <= 13).mean() > 0.05  # red inside
    assert np.abs(circle - blob).max(axis=2).mean() > 5


def test_toy_run_measures_each_weights_file_and_writes_json(bench, tmp_path, capsys):
    weights = demo_dir() / "clip.pt"
    argv = ["--clip-weights", str(weights), "--pairs", "1", "--iterations", "1"]
    assert bench.main([*argv, "--cutn", "2", "--output-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*-steering.json")
    data = json.loads(path.read_text())
    assert [row["start"] for row in data["summary"]] == ["circle", "blob"]
    assert all(row["runs"] == 4 for row in data["summary"])
    assert len(data["runs"]) == 8 and data["runs"][0]["prompt"].startswith("a red circle")
    assert "Shape steering" in capsys.readouterr().out


def test_bad_pair_count_is_refused(bench):
    with pytest.raises(SystemExit, match="--pairs must be between 1 and 4"):
        bench.main(["--pairs", "9"])
