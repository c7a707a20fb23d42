"""benchmarks/bench_quality.py at a toy size on the tiny models: prompts, judging, JSON, grid."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from artgen.training import shapes

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"


@pytest.fixture(scope="module")
def bench():
    name = "artgen_quality_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARK)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running: its dataclasses resolve their module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_48_prompts_hold_every_held_out_combination_and_every_shape_equally(bench):
    cases = bench.cases(48)
    assert len({case.prompt for case in cases}) == 48
    assert {(c.shape, c.colour, c.background) for c in cases if c.held_out} == shapes.HELD_OUT
    assert all((c.shape, c.colour, c.background) in shapes.TRAIN_COMBOS
               for c in cases if not c.held_out)  # fmt: skip
    for prefix in (4, 16, 48):
        counts = {shape: sum(c.shape == shape for c in cases[:prefix]) for shape in shapes.SHAPES}
        assert set(counts.values()) == {prefix // 4}
    assert cases[0].prompt == "a green circle on a purple background"


def test_toy_run_writes_json_and_grid(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTGEN_HOME", str(tmp_path / "home"))
    grid_path = tmp_path / "grid.png"
    argv = [
        "--vqgan", "tiny", "--clip", "tiny", "--baseline", "tiny", "--prompts", "4",
        "--seeds", "2", "--sizes", "32", "--iterations", "2", "--cutn", "2", "--batch", "3",
        "--output-dir", str(tmp_path), "--grid", str(grid_path), "--grid-count", "3",
        "--reconstructions",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    (result_path,) = tmp_path.glob("cpu-*-quality.json")
    result = json.loads(result_path.read_text())
    assert result["prompts"] == 4 and result["held_out_prompts"] == 4
    # (tested + its VQGAN's reconstructions + baseline) x prompts x seeds
    assert len(result["pictures"]) == 3 * 4 * 2
    kinds = {(row["kind"], row["baseline"]) for row in result["summary"]}
    assert kinds == {("generated", False), ("reconstructed", False), ("generated", True)}
    tested = [row for row in result["summary"] if not row["baseline"]]
    assert {row["subset"] for row in tested} == {"all", "held-out"}
    for row in result["summary"]:
        assert row["pictures"] == 8 and 0 <= row["shape"] <= 1
        assert (
            (row["seconds_per_picture"] > 0)
            if row["kind"] == "generated"
            else (row["seconds_per_picture"] is None)
        )
    assert result["targets"]["seconds_64"]["seconds"] is None  # no 64 px pictures asked for
    picture = result["pictures"][0]
    assert set(picture["correct"]) == {"colour", "background", "shape", "all"}
    with Image.open(grid_path) as grid:
        assert grid.width > 3 * 192  # three tiles of at least 192 px in one row


def test_judge_at_judges_the_same_pictures_along_the_way(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTGEN_HOME", str(tmp_path / "home"))
    argv = [
        "--vqgan", "tiny", "--clip", "tiny", "--baseline", "none", "--prompts", "4",
        "--seeds", "1", "--sizes", "32", "--iterations", "3", "--judge-at", "2,1", "--cutn", "2",
        "--output-dir", str(tmp_path),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    (result_path,) = tmp_path.glob("cpu-*-quality.json")
    result = json.loads(result_path.read_text())
    assert result["judge_at"] == [1, 2] and result["iterations"] == 3
    taken = [(p["prompt"], p["iterations"]) for p in result["pictures"]]
    assert sorted(taken) == sorted((c.prompt, i) for c in bench.cases(4) for i in (1, 2, 3))
    by_iterations = {}
    for p in result["pictures"]:
        by_iterations.setdefault(p["prompt"], []).append((p["iterations"], p["seconds"]))
    for times in by_iterations.values():  # one search, timed from its start
        assert [t for _, t in sorted(times)] == sorted(t for _, t in times)
    rows = {(row["iterations"], row["subset"]) for row in result["summary"]}
    assert rows == {(i, "all") for i in (1, 2, 3)} | {(i, "held-out") for i in (1, 2, 3)}
    assert result["targets"]["colour"]["worst"] == min(
        row["colour"] for row in result["summary"] if row["iterations"] == 3
    )


@pytest.mark.parametrize("judge_at", ["0", "3", "5", "1,x"])
def test_judge_at_outside_the_search_is_refused(bench, judge_at, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--iterations", "3", "--judge-at", judge_at])
    assert "--judge-at" in capsys.readouterr().err


def test_judge_clip_must_not_be_the_guiding_clip(bench):
    with pytest.raises(SystemExit):
        bench.main(["--clip", "tiny", "--judge-clip", "tiny"])


def test_clip_score_is_a_scaled_cosine(bench):
    from artgen.models.clip import tiny_critic

    critic = tiny_critic()
    score = bench.clip_score(critic, Image.new("RGB", (40, 40), "red"), "a red square")
    assert -100 <= score <= 100
