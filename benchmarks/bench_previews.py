"""What previews cost the generation loop: encoded in the loop vs on the worker's encoder thread.

A JobRun (the worker's per-job state) steps a generation and publishes a preview every
`--preview-every` iterations; the loop's time per iteration is measured with previews encoded in
place (encoder None) and handed to one encoder thread (what the worker does), side by side.

    python3 benchmarks/bench_previews.py --model tiny --device cpu --size 512 --iterations 20

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-previews.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def loop_ms(
    models: Any, device: torch.device, args: argparse.Namespace, threaded: bool
) -> tuple[float, float]:
    """(ms per iteration of step + after_step, ms of after_step per preview), after a warm-up."""
    from artgen.jobs.job_run import JobRun
    from artgen.jobs.schemas import JobCreate

    request = JobCreate(
        prompts="a lighthouse at dusk", width=args.size, height=args.size, cutn=args.cutn,
        iterations=args.iterations + 2, preview_every=args.preview_every, seed=0,
    )  # fmt: skip
    with ThreadPoolExecutor(max_workers=1) as encoder:
        run = JobRun.start(
            "bench", 1, {"params": request.model_dump()}, models, device=device,
            put=lambda key, value: True, stamp=dict, timeout_seconds=3600,
            checkpoint_every=10**6, encoder=encoder if threaded else None,
        )  # fmt: skip
        for _ in range(2):
            run.after_step(run.generation.step())
        synchronize(device)
        in_previews = 0.0
        start = time.perf_counter()
        for _ in range(args.iterations):
            step = run.generation.step()
            before = time.perf_counter()
            run.after_step(step)
            if step.iteration % args.preview_every == 0:
                in_previews += time.perf_counter() - before
        synchronize(device)
        elapsed = time.perf_counter() - start
        run.drain()
    previews = args.iterations // args.preview_every
    return elapsed * 1000 / args.iterations, in_previews * 1000 / max(previews, 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cutn", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--preview-every", type=int, default=5)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from artgen.bench import build_models, device_name

    device = torch.device(args.device)
    models = build_models(args.model, device)
    in_loop, in_loop_preview = loop_ms(models, device, args, threaded=False)
    threaded, threaded_preview = loop_ms(models, device, args, threaded=True)
    result = {
        "command": "python3 benchmarks/bench_previews.py " + " ".join(argv),
        "device": args.device,
        "device_name": device_name(device),
        "model": args.model,
        "size": args.size,
        "cutn": args.cutn,
        "iterations": args.iterations,
        "preview_every": args.preview_every,
        "in_loop": {"ms_per_iteration": in_loop, "loop_ms_per_preview": in_loop_preview},
        "encoder_thread": {"ms_per_iteration": threaded, "loop_ms_per_preview": threaded_preview},
    }
    print(f"{args.size}x{args.size}, preview every {args.preview_every}, {args.model} models on "
          f"{result['device_name']}")  # fmt: skip
    print(f"{'previews':<20} {'ms/it':>8} {'loop ms per preview':>20}")
    for name, (per_it, per_preview) in (
        ("encoded in the loop", (in_loop, in_loop_preview)),
        ("encoder thread", (threaded, threaded_preview)),
    ):
        print(f"{name:<20} {per_it:8.1f} {per_preview:20.1f}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{args.device.replace(':', '')}-{stamp}-previews.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
