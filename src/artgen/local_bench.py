"""The body of `artgen bench` (cli_bench.py): the benchmark needs torch and the random models."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from artgen.bench import (
    PATHS,
    BenchConfig,
    CaseResult,
    render_table,
    run_benchmark,
    write_result,
)
from artgen.cli_bench import parse_int_list
from artgen.cli_common import fail
from artgen.local_common import resolve_device
from artgen.models.loading import RANDOM_MODELS


def run(
    model: str,
    sizes: str | None,
    cutn: int | None,
    iterations: int | None,
    warmup: int | None,
    paths: str,
    batch_jobs: int,
    batch_size: int,
    device: str,
    quick: bool,
    output_dir: Path,
    tag: str | None,
) -> None:
    """Check the options, run every case (a line each as it finishes), print the table and write
    the JSON result."""
    if model not in RANDOM_MODELS:
        fail(f"--model {model!r}: choose {' or '.join(RANDOM_MODELS)}")
    chosen_paths = tuple(item.strip() for item in paths.split(",") if item.strip())
    for path in chosen_paths:
        if path not in PATHS:
            fail(f"--paths: unknown path {path!r}; choose from {', '.join(PATHS)}")
    # --quick changes only the defaults; explicit flags still win.
    config = BenchConfig(
        device=resolve_device(device),
        model=model,
        sizes=parse_int_list(sizes or "64", "--sizes"),
        cutn=cutn or (4 if quick else 8),
        iterations=iterations or (3 if quick else 10),
        warmup=warmup if warmup is not None else (1 if quick else 2),
        paths=chosen_paths,
        batch_jobs=batch_jobs,
        batch_size=batch_size,
    )
    console = Console()

    def report(case: CaseResult) -> None:
        timing = f"error: {case.error}" if case.error else f"{case.ms_per_iteration:.1f} ms/it"
        console.print(f"{case.path:>9} {case.size:>5}px x{case.jobs}: {timing}")

    result = run_benchmark(config, report)
    console.print(render_table(result))
    written = write_result(result, output_dir, tag)
    console.print(f"wrote {written}")
