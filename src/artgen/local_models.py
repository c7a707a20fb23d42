"""The bodies of `artgen models list | download | add` (cli_models.py): the model catalog over
ARTGEN_HOME, which imports torch, so cli_models imports this module only when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from artgen.cli_common import build_settings, format_size, user_errors
from artgen.models.catalog import Catalog

# `artgen models list` fits a 100-column terminal.
MODELS_LIST_WIDTH = 100


def catalog_from_env() -> Catalog:
    """The model catalog over ARTGEN_HOME."""
    return Catalog(build_settings().home)


def list_models() -> None:
    """Print every model: name, kind, whether its weights are here, default, size."""
    catalog = catalog_from_env()
    with user_errors():
        rows = catalog.list_models()
    # Fits 100 columns: short headers, descriptions wrap, the cache path goes below.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("name", "kind", "here", "default", "size"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    table.add_column("description", overflow="fold")
    for row in rows:
        table.add_row(
            row.name,
            row.kind,
            "yes" if row.available else "no",
            "yes" if row.default else "",
            format_size(row.size_bytes),
            row.description,
        )
    console = Console(width=MODELS_LIST_WIDTH)
    console.print(table)
    console.print(f"weights cache: {catalog.home} (ARTGEN_HOME)", soft_wrap=True)


def download(name: str) -> None:
    """Download a model's weights into the cache with a progress bar per file."""
    catalog = catalog_from_env()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(file_name: str, done: int, total: int | None) -> None:
            if file_name not in tasks:
                tasks[file_name] = progress.add_task(file_name, total=total)
            progress.update(tasks[file_name], completed=done, total=total)

        with user_errors():
            paths = catalog.download(name, progress=on_progress)
    if not paths:
        typer.echo(f"{name} needs no download")
    for path in paths:
        typer.echo(f"ready: {path}")


def add(name: str, config: Path, checkpoint: Path) -> None:
    """Register a local VQGAN under `name` after checking that it loads."""
    catalog = catalog_from_env()
    with user_errors():
        info = catalog.add(name, config, checkpoint)
    typer.echo(f"added {info.name}: use --model {info.name}")
