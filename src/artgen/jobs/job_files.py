"""A job's directory: the only file names in it, atomic writes, and what recovery sweeps away."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from artgen.jobs.schemas import Job, JobError, JobStatus

# The only file names that may exist in a job directory (no client string ever reaches a path).
INIT_IMAGE = "input.png"
PREVIEW = "preview.png"
FINAL = "final.png"
VIDEO = "video.mp4"
CHECKPOINT = "checkpoint.pt"
TEMP_SUFFIX = ".tmp"
# A restyle's uploaded video, named by its container (ffmpeg reads any of them).
SOURCE_VIDEO_NAMES = {"mp4": "source.mp4", "webm": "source.webm", "gif": "source.gif"}


def frame_file_name(index: int) -> str:
    """File of an animation's frame `index` (0-based)."""
    return f"frame-{int(index):05d}.png"


def prompt_file_name(index: int) -> str:
    """File name of the index-th image prompt."""
    return f"prompt_{int(index)}.png"


def validate_job_id(job_id: str) -> str:
    """The canonical form of a job id, or ValueError if it is not a UUID."""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise ValueError(f"job id {job_id!r} is not a UUID") from None


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same dir, fsync, rename over path, fsync the dir."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sweep_job_dirs(jobs_dir: Path, known: set[str]) -> list[str]:
    """Remove directories without a record and temp files; a note for each removal."""
    notes: list[str] = []
    for entry in jobs_dir.iterdir():
        if not entry.is_dir() or entry.name not in known:
            # A directory written before its record was inserted (crash in between).
            notes.append(f"removed orphan {entry.name}")
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            continue
        for path in entry.iterdir():
            # Temp files: ours end in TEMP_SUFFIX; an MP4 being assembled is .video*.mp4.
            if path.name.endswith(TEMP_SUFFIX) or path.name.startswith(".video"):
                notes.append(f"removed temp file {entry.name}/{path.name}")
                path.unlink(missing_ok=True)
    return notes


def drop_missing_files(job: Job, present: Callable[[str | None], bool]) -> None:
    """Unset the record's fields whose file is not `present` (a succeeded job without its image
    becomes failed)."""
    if not present(job.init_image_file):
        job.init_image_file = None
    job.image_prompt_files = [name for name in job.image_prompt_files if present(name)]
    if not present(job.preview_file):
        job.preview_file, job.preview_iteration = None, None
    if not present(job.checkpoint_file):
        job.checkpoint_file, job.checkpoint_iteration = None, None
    if not present(job.video_file):
        job.video_file = None
    if not present(job.source_video_file):
        job.source_video_file = None  # a restyle without its source fails when it runs
    if not present(job.image_file):
        job.image_file = None
        if job.status == JobStatus.succeeded:
            # Never claim success without the image on disk.
            job.status = JobStatus.failed
            job.error = JobError(code="internal_error", message="the final image was lost")
