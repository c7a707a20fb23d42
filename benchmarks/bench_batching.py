"""Worker-level batching through the real service: N jobs one after another vs stepped together.

Both runs go through `create_app` with the embedded worker and resident models: POST N jobs of one
size at once, wait for every final image. The first run lets the worker take one job at a time
(batch_jobs 1), the second lets it batch all N (batch_jobs N). Aggregate iterations/s is
N * iterations / wall time from the first POST to the last final image.

    python3 benchmarks/bench_batching.py --model tiny --device cpu --size 32 --jobs 4
    python3 benchmarks/bench_batching.py --model random-f16 --device cuda --size 256 --jobs 8

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-batching.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def run_jobs(
    data_dir: Path,
    model: str,
    device: str,
    *,
    batch_jobs: int,
    jobs: int,
    size: int,
    iterations: int,
    cutn: int,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """POST `jobs` jobs to a fresh app (worker batching up to `batch_jobs`); time until all done."""
    from bench_api import post_job, service_settings, wait_jobs, wait_service_ready
    from fastapi.testclient import TestClient

    from artgen.api.app import create_app

    settings = service_settings(
        data_dir, model, device, batch_jobs=batch_jobs, queue_limit=max(100, jobs)
    )

    def body(seed: int, job_iterations: int) -> dict[str, Any]:
        return {
            "prompts": f"a castle in the clouds, study {seed}",
            "width": size,
            "height": size,
            "iterations": job_iterations,
            "cutn": cutn,
            "seed": seed,
            "preview_every": job_iterations,
        }

    with TestClient(create_app(settings)) as client:
        wait_service_ready(client)
        # Warm-up: kernels, allocator and the first-step costs out of the timed part.
        wait_jobs(client, [post_job(client, body(10_000, 3))], timeout)
        begin = time.perf_counter()
        ids = [post_job(client, body(seed, iterations)) for seed in range(jobs)]
        finished = wait_jobs(client, ids, timeout)
        wall = time.perf_counter() - begin
    return {
        "batch_jobs": batch_jobs,
        "jobs": jobs,
        "wall_seconds": wall,
        "iterations_per_second": jobs * iterations / wall,
        "seeds": [job["seed"] for job in finished],
    }


def compare(
    model: str, device: str, *, jobs: int, size: int, iterations: int, cutn: int
) -> dict[str, Any]:
    """One job at a time vs all batched, side by side in this process."""
    runs = []
    for batch_jobs in (1, jobs):
        with tempfile.TemporaryDirectory(prefix="artgen-batching-") as directory:
            runs.append(
                run_jobs(
                    Path(directory),
                    model,
                    device,
                    batch_jobs=batch_jobs,
                    jobs=jobs,
                    size=size,
                    iterations=iterations,
                    cutn=cutn,
                )  # fmt: skip
            )
    alone, batched = runs
    return {
        "model": model,
        "device": device,
        "size": size,
        "iterations": iterations,
        "cutn": cutn,
        "jobs": jobs,
        "runs": runs,
        "speedup": batched["iterations_per_second"] / alone["iterations_per_second"],
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result['jobs']} jobs {result['size']}x{result['size']}, "
        f"{result['iterations']} it, cutn {result['cutn']}, {result['model']} on "
        f"{result['device_name']}"
    )
    for column in ("worker", "wall s", "aggregate it/s", "vs one at a time"):
        table.add_column(column, justify="right")
    base = result["runs"][0]["iterations_per_second"]
    for run in result["runs"]:
        label = "one at a time" if run["batch_jobs"] == 1 else f"batched ({run['batch_jobs']})"
        table.add_row(
            label,
            f"{run['wall_seconds']:.2f}",
            f"{run['iterations_per_second']:.1f}",
            f"{run['iterations_per_second'] / base:.2f}x",
        )
    Console().print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "random-f16"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--cutn", type=int, default=8)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = compare(
        args.model, args.device, jobs=args.jobs, size=args.size, iterations=args.iterations,
        cutn=args.cutn,
    )  # fmt: skip
    import torch

    from artgen.bench import device_name

    result["device_name"] = device_name(torch.device(args.device))
    result["command"] = "python3 benchmarks/bench_batching.py " + " ".join(argv)
    print_table(result)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = args.device.replace(":", "")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{label}-{stamp}-batching.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
