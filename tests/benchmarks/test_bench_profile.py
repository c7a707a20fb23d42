"""benchmarks/bench_profile.py on the tiny models: the operators that take a fast step's time."""

import json

import torch

CPU = torch.device("cpu")


def test_profile_lists_the_slowest_operators_first(scripts, tiny_models):
    data = scripts("bench_profile").profile_steps(tiny_models, CPU, 32, 2, steps=1, top=5)
    operators = data["operators"]
    assert 0 < len(operators) <= 5
    times = [operator["self_ms_per_step"] for operator in operators]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert data["sorted_by"] == "self_cpu_time_total"
    assert operators[0]["name"] in data["table"]


def test_the_script_writes_its_json(scripts, tmp_path):
    argv = ["--size", "32", "--cutn", "2", "--steps", "1", "--top", "3"]
    assert scripts("bench_profile").main([*argv, "--output-dir", str(tmp_path)]) == 0
    (written,) = tmp_path.glob("cpu-*-profile.json")
    data = json.loads(written.read_text())
    assert len(data["operators"]) == 3 and "table" not in data
