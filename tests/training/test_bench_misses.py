"""benchmarks/bench_misses.py at a toy size on the tiny models: verdicts, table and JSON."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    name = "artgen_misses_benchmark"
    if name not in sys.modules:
        sys.path.insert(0, str(BENCHMARKS))  # it imports bench_quality, as when run as a script
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / "bench_misses.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_toy_run_sorts_each_picture_into_hit_critic_or_search(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARTGEN_HOME", str(tmp_path / "home"))
    argv = [
        "--vqgan", "tiny", "--clip", "tiny", "--prompts", "4", "--seeds", "2", "--size", "32",
        "--iterations", "2", "--cutn", "2", "--draws", "2", "--drawings", "2",
        "--output-dir", str(tmp_path),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    assert "tiny: 4 prompts x 2 seeds" in capsys.readouterr().out
    (path,) = tmp_path.glob("cpu-*-misses.json")
    result = json.loads(path.read_text())
    assert len(result["pictures"]) == 8
    for picture in result["pictures"]:
        for key, verdict in picture["verdict"].items():
            if picture["correct"][key]:
                assert verdict == "hit"
            else:  # below the drawings of its prompt: the critic's; above: the search's
                below = picture["loss"] < picture["drawing_loss"]
                assert verdict == ("critic" if below else "search")
        assert picture["best_drawing_loss"] <= picture["drawing_loss"]
    rows = {(row["subset"], row["criterion"]): row for row in result["summary"]}
    assert set(rows) == {(s, c) for s in ("all", "held-out") for c in ("shape", "all")}
    for row in rows.values():
        assert row["hit"] + row["critic"] + row["search"] == row["pictures"] == 8


def test_the_same_draws_give_the_same_loss(bench, tmp_path, monkeypatch):
    import torch

    from artgen.engine import Generation, GenerationParams
    from artgen.models.catalog import Catalog
    from artgen.models.loading import load_models

    monkeypatch.setenv("ARTGEN_HOME", str(tmp_path))
    models = load_models("tiny", ["tiny"], torch.device("cpu"), Catalog(tmp_path))
    params = GenerationParams(prompts="a red square", width=32, height=32, seed=3, cutn=2)
    losses = [
        bench.mean_loss(Generation(models, params, device=torch.device("cpu")), 3) for _ in range(2)
    ]
    assert losses[0] == losses[1]


def test_counts_below_one_are_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--draws", "0"])
    assert "--draws must be at least 1" in capsys.readouterr().err
