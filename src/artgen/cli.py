"""The `artgen` command line: generate, animate, restyle, models, serve, worker, bench, jobs.

Argument parsing lives only here and in the cli_* command modules (one per command or group);
everything below the CLI takes typed values. The helpers the commands share are in
artgen.cli_common.

Importing the CLI stays light (typer, rich, the schemas, artgen.client: no torch, no FastAPI), so
`artgen --help` and the remote commands (--server, `jobs`) start fast. What runs on this machine
(the engine, the models, the server, the worker) is in the local_* modules (and artgen.api.server),
imported inside the command that runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artgen.cli_animate import animate, restyle
from artgen.cli_bench import bench
from artgen.cli_common import build_settings
from artgen.cli_generate import generate
from artgen.cli_models import models_app
from artgen.cli_remote import jobs_app

# Plain click help: typer's rich panels label every flag (--help included) "<bool>".
app = typer.Typer(
    help="CLIP-guided VQGAN art generator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(generate)
app.add_typer(models_app, name="models")
app.command()(animate)
app.command()(restyle)
app.add_typer(jobs_app, name="jobs")


# `serve` (its embedded worker) and `worker` take the same batching option.
BatchJobsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Same-size jobs stepped together in one batch (default 8 on CUDA, 1 on a CPU).",
    ),
]


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Job records, images and the embedded queue (default ./artgen-data, "
            "or ARTGEN_DATA_DIR)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Default VQGAN model.")] = None,
    clip_model: Annotated[
        list[str] | None, typer.Option(metavar="NAME", help="Default CLIP model (repeatable).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Embedded worker's device (default auto).")
    ] = None,
    queue: Annotated[
        str | None, typer.Option(help="Queue URL: sqlite:///path (default) or redis://host/db.")
    ] = None,
    worker: Annotated[
        bool | None,
        typer.Option("--worker/--no-worker", help="Run a worker inside this process (default on)."),
    ] = None,
    worker_process: Annotated[
        bool | None,
        typer.Option(
            "--worker-process/--worker-thread",
            help="Run the embedded worker as a child process, so API load does not slow jobs "
            "(default: a thread).",
        ),
    ] = None,
    batch_jobs: BatchJobsOption = None,
) -> None:
    """Run the HTTP API (and, by default, an embedded worker)."""
    settings = build_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        model=model,
        clip_model=",".join(clip_model) if clip_model else None,
        device=device,
        queue_url=queue,
        worker=worker,
        worker_process=worker_process,
        batch_jobs=batch_jobs,
    )
    # torch loads only when a command runs locally: `artgen --help` and remote commands stay fast
    from artgen.api import server

    server.serve(settings)


@app.command()
def worker(
    queue: Annotated[
        str | None, typer.Option(help="Queue URL shared with `artgen serve` (redis://host/db).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="VQGAN model to keep loaded.")] = None,
    clip_model: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="CLIP model to keep loaded (repeatable)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data dir of the default sqlite queue (default ./artgen-data)."),
    ] = None,
    batch_jobs: BatchJobsOption = None,
) -> None:
    """Run a worker that takes jobs from the queue."""
    settings = build_settings(
        queue_url=queue,
        device=device,
        model=model,
        clip_model=",".join(clip_model) if clip_model else None,
        data_dir=data_dir,
        batch_jobs=batch_jobs,
    )
    from artgen import local_worker  # torch loads only here (see serve)

    raise typer.Exit(local_worker.run(settings, device))


app.command()(bench)
