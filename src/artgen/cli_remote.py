"""The CLI against a running artgen server: `generate|animate|restyle --server URL`, `jobs ...`.

Nothing here loads a model: jobs are submitted with artgen.client and followed over their event
stream, with the same progress bar as a local run.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from artgen.cli_common import EXIT_BAD_INPUT, fail
from artgen.cli_progress import AnimationProgress, GenerateProgress
from artgen.client import (
    ApiError,
    ArtgenConnectionError,
    Client,
    Job,
    JobFailed,
    JobStatus,
    ServerEvent,
)
from artgen.engine.params import GenerationParams
from artgen.jobs.animation_fields import JobKind

# Exit codes: the job failed or was canceled (1), Ctrl-C (130, as a shell reports SIGINT).
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 130

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="ARTGEN_SERVER",
        metavar="URL",
        help="Run on this artgen server (e.g. http://gpu-box:8000) instead of loading models.",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="ARTGEN_API_KEY",
        metavar="KEY",
        help="API key for --server (sent as X-API-Key).",
        show_default=False,
    ),
]

jobs_app = typer.Typer(
    help="List, show, cancel, delete and wait for jobs on an artgen server (--server).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question (Ctrl-C asks before canceling the remote job)."""
    return sys.stdin is not None and sys.stdin.isatty()


def open_client(server: str | None, api_key: str | None) -> Client:
    """A client for --server, or a clear error when it is missing or not an http(s) URL."""
    if not server:
        fail("give --server URL (or set ARTGEN_SERVER), e.g. --server http://127.0.0.1:8000")
    if not server.startswith(("http://", "https://")):
        fail(f"--server {server!r} must be an http:// or https:// URL")
    return Client(server, api_key=api_key)


@contextmanager
def remote_errors(server: str) -> Iterator[None]:
    """The server's refusals as one line: exit 2 for what the user can fix, else 1."""
    try:
        yield
    except ApiError as error:
        exit_code = EXIT_BAD_INPUT if error.status_code < 500 else EXIT_JOB_FAILED
        answer = f"{error.status_code} {error.code}: {error.message}"
        typer.echo(f"error: {server} answered {answer}", err=True)
        raise typer.Exit(exit_code) from None
    except ArtgenConnectionError as error:
        typer.echo(f"error: cannot reach {server}: {error}", err=True)
        raise typer.Exit(EXIT_JOB_FAILED) from None
    except JobFailed as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_JOB_FAILED) from None


@dataclass
class RemoteFrames:
    """Where a remote animation stands, in the attributes AnimationProgress reads of one."""

    iteration: int
    frame: int
    frames: int
    frame_iteration: int
    frame_iterations: int
    frame_done: int | None = None


def follow(client: Client, job: Job) -> Job:
    """Show the job's progress from its event stream until it ends; its final state."""
    if job.kind.animated:
        label = "restyling" if job.kind == JobKind.restyle else "animating"
        with AnimationProgress(label, job.iterations, job.frames or 1) as frames_progress:
            for event in client.events(job.id):
                if event.type == "progress":
                    _show_frames(frames_progress, event)
    else:
        with GenerateProgress(job.iterations) as progress:
            for event in client.events(job.id):
                if event.type == "progress":
                    _show_progress(progress, event)
    return client.get(job.id)


def _read_loss(event: ServerEvent) -> Callable[[], float]:
    loss = event.data.get("loss")
    return lambda: math.nan if loss is None else float(loss)


def _show_progress(progress: GenerateProgress, event: ServerEvent) -> None:
    progress.update(int(event.data.get("iteration") or 0), _read_loss(event))


def _show_frames(progress: AnimationProgress, event: ServerEvent) -> None:
    data = event.data
    state: Any = RemoteFrames(
        iteration=int(data.get("iteration") or 0),
        frame=int(data.get("frame") or 0),
        frames=int(data.get("frames") or 1),
        frame_iteration=int(data.get("frame_iteration") or 0),
        frame_iterations=int(data.get("frame_iterations") or 0),
    )
    progress.update(state, _read_loss(event))


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, so no half file is ever left there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def cancel_on_interrupt(client: Client, server: str, job_id: str) -> None:
    """After Ctrl-C: cancel the remote job (asking first when a person is at the terminal)."""
    cancel = True
    if stdin_is_terminal():
        try:
            cancel = typer.confirm(f"\ncancel job {job_id} on {server}?", default=True)
        except typer.Abort:
            cancel = True  # a second Ctrl-C at the question
    if not cancel:
        typer.echo(
            f"job {job_id} keeps running: artgen jobs wait {job_id} --server {server}", err=True
        )
        return
    with remote_errors(server):
        client.cancel(job_id)
    typer.echo(f"interrupted: canceled job {job_id}, no image written", err=True)


def save_results(client: Client, job: Job, output: Path | None, video: Path | None) -> None:
    """Write the server's PNG (its bytes carry the parameters) and the video when asked."""
    if output is not None:
        write_atomically(output, client.image(job.id))
        typer.echo(f"wrote {output} (seed {job.seed})")
    if video is not None:
        write_atomically(video, client.video(job.id))
        typer.echo(f"wrote {video}")


def reject_local_only(given: dict[str, bool]) -> None:
    """Options that only mean something on this machine fail with --server, naming the option."""
    for option, was_given in given.items():
        if was_given:
            fail(f"{option} applies to a local run; the server decides it (leave it out)")


def generate_remote(
    server: str | None,
    api_key: str | None,
    fields: dict[str, Any],
    *,
    local_only: dict[str, bool],
    init_image: Path | None,
    image_prompts: Sequence[Path],
    output: Path,
    video: Path | None,
) -> None:
    """`artgen generate --server`: submit `fields` (JobCreate), follow, write PNG (and video).

    `local_only` names the options given that mean nothing remotely: any given one fails.
    """
    reject_local_only(local_only)
    client = open_client(server, api_key)
    assert server is not None
    with client, remote_errors(server):
        job = client.submit(
            init_image=init_image, image_prompts=list(image_prompts), video=video is not None,
            **fields,
        )  # fmt: skip
        typer.echo(f"submitted job {job.id} to {server}", err=True)
        final = follow_to_success(client, server, job)
        save_results(client, final, output, video)


def follow_to_success(client: Client, server: str, job: Job) -> Job:
    """Follow a submitted job to its end: Ctrl-C cancels it (exit 130), any end but success is
    JobFailed."""
    try:
        final = follow(client, job)
    except KeyboardInterrupt:
        cancel_on_interrupt(client, server, job.id)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if final.status != JobStatus.succeeded:
        raise JobFailed(final)
    return final


def local_only_options(
    device: str | None, fast: bool | None, frames_dir: Path | None
) -> dict[str, bool]:
    """Which of the video commands' options that mean nothing on a server were given."""
    return {
        "--device": device is not None,
        "--fast/--reference": fast is not None,
        "--frames-dir": frames_dir is not None,
    }


def remote_fields(
    kind: str,
    params: GenerationParams,
    animation_values: dict[str, Any],
    model: str | None,
    clip_models: Sequence[str] | None,
) -> dict[str, Any]:
    """The JobCreate fields of an animation or restyle: only what was given (the server's
    defaults for the rest), the animation's fields flat beside the frame parameters."""
    fields = params.model_dump(mode="json", exclude_unset=True)
    fields.update((name, value) for name, value in animation_values.items() if value is not None)
    fields["kind"] = kind
    if model:
        fields["model"] = model
    if clip_models:
        fields["clip_models"] = list(clip_models)
    return fields


def video_remote(
    server: str | None,
    api_key: str | None,
    fields: dict[str, Any],
    *,
    local_only: dict[str, bool],
    output: Path,
    init_image: Path | None = None,
    source_video: Path | None = None,
) -> None:
    """`artgen animate|restyle --server`: submit (fields carry `kind`), follow, write the MP4."""
    reject_local_only(local_only)
    client = open_client(server, api_key)
    assert server is not None
    with client, remote_errors(server):
        job = client.submit(init_image=init_image, source_video=source_video, **fields)
        typer.echo(f"submitted {job.kind.value} job {job.id} to {server}", err=True)
        final = follow_to_success(client, server, job)
        write_atomically(output, client.video(job.id))
        typer.echo(f"wrote {output} ({final.frames_done} frames, seed {final.seed})")


def _run(server: str | None, api_key: str | None, action: Callable[[Client, str], None]) -> None:
    client = open_client(server, api_key)
    assert server is not None
    with client, remote_errors(server):
        action(client, server)


JobIdArgument = Annotated[str, typer.Argument(metavar="JOB_ID", help="The job's id.")]


@jobs_app.command("list")
def jobs_list(
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    status: Annotated[
        JobStatus | None, typer.Option(help="Only jobs with this status.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Jobs per page.")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first).")] = 0,
) -> None:
    """The server's jobs, newest first: id, status, progress, size and prompt."""

    def show(client: Client, _: str) -> None:
        page = client.list(status=status, limit=limit, offset=offset)
        for job in page.items:
            params = job.params
            size = f"{params.get('width', '?')}x{params.get('height', '?')}"
            prompt = str(params.get("prompts", ""))
            typer.echo(
                f"{job.id}  {job.status.value:<9} {job.iteration:>6}/{job.iterations:<6} "
                f"{size:>9}  {prompt[:60]}"
            )
        shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
        typer.echo(f"{shown} of {page.total} job(s)", err=True)

    _run(server, api_key, show)


@jobs_app.command("show")
def jobs_show(
    job_id: JobIdArgument, server: ServerOption = None, api_key: ApiKeyOption = None
) -> None:
    """One job as the server's JSON."""
    _run(
        server, api_key, lambda client, _: typer.echo(client.get(job_id).model_dump_json(indent=2))
    )


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: JobIdArgument, server: ServerOption = None, api_key: ApiKeyOption = None
) -> None:
    """Cancel a job (a running one stops within an iteration)."""

    def cancel(client: Client, _: str) -> None:
        job = client.cancel(job_id)
        state = "cancel requested" if job.cancel_requested else job.status.value
        typer.echo(f"{job.id}: {state}")

    _run(server, api_key, cancel)


@jobs_app.command("delete")
def jobs_delete(
    job_id: JobIdArgument, server: ServerOption = None, api_key: ApiKeyOption = None
) -> None:
    """Delete a job's record and files on the server."""

    def delete(client: Client, _: str) -> None:
        client.delete(job_id)
        typer.echo(f"deleted {job_id}")

    _run(server, api_key, delete)


@jobs_app.command("wait")
def jobs_wait(
    job_id: JobIdArgument,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the final PNG here.", show_default=False),
    ] = None,
    video: Annotated[
        Path | None, typer.Option(help="Write the job's MP4 here.", show_default=False)
    ] = None,
) -> None:
    """Follow a job with a progress bar until it ends (Ctrl-C stops waiting, not the job)."""
    if output is not None and output.suffix.lower() != ".png":
        fail(f"--output {str(output)!r} must end in .png (the server's image is a PNG)")

    def wait(client: Client, server_url: str) -> None:
        try:
            final = follow(client, client.get(job_id))
        except KeyboardInterrupt:
            typer.echo(f"stopped waiting; job {job_id} keeps running on {server_url}", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if final.status != JobStatus.succeeded:
            raise JobFailed(final)
        typer.echo(f"{job_id}: succeeded")
        save_results(client, final, output, video)

    _run(server, api_key, wait)
