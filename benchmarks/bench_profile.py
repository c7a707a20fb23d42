"""Where the fast path's time goes: torch.profiler over a few steps, the operators that take it.

    python3 benchmarks/bench_profile.py --model tiny --device cpu --size 32 --cutn 4
    python3 benchmarks/bench_profile.py --model random-f16 --device cuda --size 512 --cutn 64

Prints the profiler's table and writes JSON (the top operators) to
benchmarks/results/<device>-<UTC time>-profile.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from artgen.bench import (
    BenchConfig,
    bench_params,
    build_models,
    device_label,
    device_name,
    synchronize,
    use_case_layout,
    write_json,
)
from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.models.loading import Models

RESULTS = Path(__file__).resolve().parent / "results"


def profile_steps(
    models: Models, device: torch.device, size: int, cutn: int, steps: int = 3, top: int = 15
) -> dict[str, Any]:
    """torch.profiler over a few fast-path steps: the operators that take the time.

    Returns {"table": printable text, "operators": [{name, calls, self_ms, total_ms}, ...]}.
    """
    config = BenchConfig(device=device, sizes=(size,), cutn=cutn, iterations=steps, warmup=3)
    use_case_layout(models, device, fast=True)
    generation = Generation(
        models, bench_params(config, size, seed=0), device=device, options=EngineOptions(fast=True)
    )
    for _ in range(config.warmup):
        generation.step()
    synchronize(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            generation.step()
        synchronize(device)
    averages = profiler.key_averages()
    # Newer torch names device time "device_time"; older releases say "cuda_time".
    on_gpu = device.type == "cuda"
    self_key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    if on_gpu and not hasattr(averages[0], self_key):
        self_key = "self_cuda_time_total"
    total_key = self_key.replace("self_", "")
    rows = sorted(averages, key=lambda event: getattr(event, self_key), reverse=True)[:top]
    operators = [
        {
            "name": event.key,
            "calls": event.count,
            "self_ms_per_step": getattr(event, self_key) / 1000 / steps,
            "total_ms_per_step": getattr(event, total_key) / 1000 / steps,
        }
        for event in rows
    ]
    return {
        "size": size,
        "cutn": cutn,
        "steps": steps,
        "sorted_by": self_key,
        "operators": operators,
        "table": averages.table(sort_by=self_key, row_limit=top),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "random-f16"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cutn", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="operators shown and kept")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    models = build_models(args.model, device)
    data = profile_steps(models, device, args.size, args.cutn, steps=args.steps, top=args.top)
    print(data.pop("table"))
    data.update(
        device=device_label(device),
        device_name=device_name(device),
        model=args.model,
        command="python3 benchmarks/bench_profile.py " + " ".join(argv),
    )
    print(f"wrote {write_json(data, args.output_dir, data['device'], 'profile')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
