"""`artgen models list | download | add`: the model catalog from the command line.

The bodies are in local_models.py (the catalog imports torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artgen.cli_common import fail

models_app = typer.Typer(
    help="List, download and register models.", no_args_is_help=True, rich_markup_mode=None
)


@models_app.command("list")
def models_list() -> None:
    """Show every model: name, kind, whether its weights are here, default, size."""
    # torch loads only when a command runs locally: `artgen --help` and remote commands stay fast
    from artgen import local_models

    local_models.list_models()


@models_app.command("download")
def models_download(
    name: Annotated[str, typer.Argument(help="Model name from `artgen models list`.")],
) -> None:
    """Download a model's weights into the cache (resumes a partial download)."""
    from artgen import local_models  # torch loads only here (see models_list)

    local_models.download(name)


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="Name to register the model under.")],
    config: Annotated[Path, typer.Option(help="taming YAML config file.")],
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint (.ckpt) with a state_dict.")],
) -> None:
    """Register a local VQGAN (config + checkpoint) under NAME after checking that it loads."""
    for option, path in (("--config", config), ("--checkpoint", checkpoint)):
        if not path.is_file():
            fail(f"{option} {str(path)!r} does not exist")
    from artgen import local_models  # torch loads only here (see models_list)

    local_models.add(name, config, checkpoint)
