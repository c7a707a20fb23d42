"""benchmarks/bench_pick.py on hand-made bench_quality results: the seed each pick keeps."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    name = "artgen_pick_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / "bench_pick.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def picture(prompt: str, seed: int, loss: float, shape_right: bool, **overrides) -> dict:
    record = {
        "models": "demo", "baseline": False, "kind": "generated", "prompt": prompt,
        "held_out": prompt.startswith("held"), "seed": seed, "size": 64, "iterations": 100,
        "loss": loss,
        "correct": {"colour": True, "background": False, "shape": shape_right, "all": False},
    }  # fmt: skip
    return record | overrides


def results(tmp_path: Path, name: str, pictures: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps({"device": "cpu", "vqgan": "demo", "clip": "demo", "pictures": pictures})
    )
    return path


def test_each_pick_keeps_its_seed_across_result_files(bench, tmp_path, capsys):
    first = results(
        tmp_path,
        "seeds-1-2.json",
        [
            picture("a", 1, 0.9, shape_right=False),
            picture("a", 2, 0.8, shape_right=True),  # a: the lowest loss is right
            picture("held b", 1, 0.7, shape_right=False),
            picture("held b", 2, 0.9, shape_right=False),
            picture("a", 1, 0.1, shape_right=True, kind="reconstructed"),  # not a generated one
            picture("a", 3, 0.1, shape_right=True, baseline=True, models="tiny"),  # the baseline
        ],
    )
    second = results(
        tmp_path,
        "seeds-3.json",
        [picture("a", 3, 1.0, shape_right=False), picture("held b", 3, 0.8, shape_right=True)],
    )
    assert bench.main([str(first), str(second), "--output-dir", str(tmp_path)]) == 0
    assert "lowest loss" in capsys.readouterr().out
    (written,) = tmp_path.glob("cpu-*-pick.json")
    rows = {(r["subset"], r["pick"]): r for r in json.loads(written.read_text())["summary"]}
    assert rows["all", "one seed"]["shape"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert rows["all", "lowest loss"]["shape"] == 0.5  # a's seed 2 right, b's seed 1 wrong
    assert rows["all", "highest loss"]["shape"] == 0.0  # a's seed 3, b's seed 2
    assert rows["all", "any seed"]["shape"] == 1.0
    assert rows["held-out", "lowest loss"]["prompts"] == 1 and rows["all", "one seed"]["seeds"] == 3
    assert (
        rows["all", "lowest loss"]["colour"] == 1.0 and rows["all", "any seed"]["background"] == 0.0
    )


def test_results_with_one_seed_per_prompt_are_refused_with_what_to_run(bench, tmp_path, capsys):
    one_seed = results(tmp_path, "one.json", [picture("a", 1, 0.9, shape_right=True)])
    assert bench.main([str(one_seed), "--output-dir", str(tmp_path)]) == 2
    assert "--seeds 2" in capsys.readouterr().err
    assert not list(tmp_path.glob("*-pick.json"))
