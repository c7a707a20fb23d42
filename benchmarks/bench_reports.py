"""What previews and checkpoints cost the generation loop: written in the loop vs off it.

A JobRun (the worker's per-job state) steps a generation, publishes a preview every
`--preview-every` iterations and a checkpoint every `--checkpoint-every` into a real SQLite queue;
the loop is timed with both done in place (encoder None) and handed to one encoder thread (what
the worker does), side by side: ms per iteration, and the loop's time in after_step per iteration.

    python3 benchmarks/bench_reports.py --model tiny --device cpu --size 512 --iterations 20

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-reports.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
    """(ms per iteration, ms of it spent in after_step: previews and checkpoints), after warm-up."""
    from artgen.jobs.job_run import JobRun
    from artgen.jobs.queue import JobQueue
    from artgen.jobs.reports import Report, Sign, encode
    from artgen.jobs.schemas import JobCreate

    request = JobCreate(
        prompts="a lighthouse at dusk", width=args.size, height=args.size, cutn=args.cutn,
        iterations=args.iterations + 2, preview_every=args.preview_every, seed=0,
    )  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="artgen-reports-") as directory,
        ThreadPoolExecutor(max_workers=1) as encoder,
    ):
        queue = JobQueue.from_url(f"sqlite:///{directory}/queue.sqlite3")

        def put(key: str, report: Report) -> bool:
            queue.put(key, encode(report))
            return True

        run = JobRun.start(
            "bench", 1, {"params": request.model_dump()}, models, device=device, put=put,
            sign=lambda: Sign("bench", 0.0), timeout_seconds=3600,
            checkpoint_every=args.checkpoint_every, encoder=encoder if threaded else None,
        )  # fmt: skip
        for _ in range(2):
            run.after_step(run.generation.step())
        run.drain()
        synchronize(device)
        in_reports = 0.0
        start = time.perf_counter()
        for _ in range(args.iterations):
            step = run.generation.step()
            before = time.perf_counter()
            run.after_step(step)
            in_reports += time.perf_counter() - before
        synchronize(device)
        elapsed = time.perf_counter() - start
        run.drain()
        queue.close()
    return elapsed * 1000 / args.iterations, in_reports * 1000 / args.iterations


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "random-f16"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cutn", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--preview-every", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from artgen.bench import build_models, device_name

    device = torch.device(args.device)
    models = build_models(args.model, device)
    in_loop, in_loop_reports = loop_ms(models, device, args, threaded=False)
    threaded, threaded_reports = loop_ms(models, device, args, threaded=True)
    result = {
        "command": "python3 benchmarks/bench_reports.py " + " ".join(argv),
        "device": args.device,
        "device_name": device_name(device),
        "model": args.model,
        "size": args.size,
        "cutn": args.cutn,
        "iterations": args.iterations,
        "preview_every": args.preview_every,
        "checkpoint_every": args.checkpoint_every,
        "in_loop": {"ms_per_iteration": in_loop, "report_ms_per_iteration": in_loop_reports},
        "encoder_thread": {
            "ms_per_iteration": threaded,
            "report_ms_per_iteration": threaded_reports,
        },
    }
    print(f"{args.size}x{args.size}, preview every {args.preview_every}, checkpoint every "
          f"{args.checkpoint_every}, {args.model} models on {result['device_name']}")  # fmt: skip
    print(f"{'reports':<20} {'ms/it':>8} {'of it in reports':>18}")
    for name, (per_it, reports) in (
        ("in the loop", (in_loop, in_loop_reports)),
        ("encoder thread", (threaded, threaded_reports)),
    ):
        print(f"{name:<20} {per_it:8.1f} {reports:18.1f}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{args.device.replace(':', '')}-{stamp}-reports.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
