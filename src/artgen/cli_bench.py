"""`artgen bench`: ms/iteration, iterations/s and peak memory of the engine's paths.

The body is in local_bench.py (it needs torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artgen.cli_common import fail


def parse_int_list(value: str, option: str) -> tuple[int, ...]:
    """'64,128' -> (64, 128), or fail naming the option."""
    try:
        numbers = tuple(int(item) for item in value.split(",") if item.strip())
    except ValueError:
        fail(f"{option} {value!r} must be comma-separated integers, e.g. 64,128")
    if not numbers or min(numbers) < 1:
        fail(f"{option} {value!r} must list positive integers")
    return numbers


def bench(
    model: Annotated[
        str,
        typer.Option(help="random-f16 (f16 16384 VQGAN + ViT-B-32, random weights) or tiny."),
    ] = "random-f16",
    sizes: Annotated[
        str | None, typer.Option(help="Square sizes, comma-separated (default 64).")
    ] = None,
    cutn: Annotated[
        int | None, typer.Option(min=1, help="Cutouts per iteration (default 8).")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="Timed iterations per case (default 10).")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(min=0, help="Untimed iterations first (default 2).")
    ] = None,
    paths: Annotated[str, typer.Option(help="Engine paths, comma-separated.")] = "reference,fast",
    batch_jobs: Annotated[
        int, typer.Option(min=0, help="Also step N jobs together (engine batch mode); 0: off.")
    ] = 0,
    batch_size: Annotated[int, typer.Option(min=16, help="Size of the batched jobs.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quick: Annotated[
        bool, typer.Option(help="Small defaults for a smoke run: 64px, cutn 4, 3 iterations.")
    ] = False,
    output_dir: Annotated[Path, typer.Option(help="Where the JSON result goes.")] = Path(
        "benchmarks/results"
    ),
    tag: Annotated[str | None, typer.Option(help="Suffix for the JSON file name.")] = None,
) -> None:
    """Measure ms/iteration, iterations/s and peak memory: reference vs fast path."""
    # torch loads only when a command runs locally: `artgen --help` and remote commands stay fast
    from artgen import local_bench

    local_bench.run(
        model=model,
        sizes=sizes,
        cutn=cutn,
        iterations=iterations,
        warmup=warmup,
        paths=paths,
        batch_jobs=batch_jobs,
        batch_size=batch_size,
        device=device,
        quick=quick,
        output_dir=output_dir,
        tag=tag,
    )
