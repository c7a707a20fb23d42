"""The API's public schemas: a job as the API shows it (JobPublic, its URLs) and a page of jobs.

Torch-free and FastAPI-free: artgen.client imports these to type what the server answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from artgen.jobs.schemas import ACTIVE_STATUSES, Job, JobError, JobKind, JobStatus


def job_path(job_id: str) -> str:
    """The job's URL path; its resources are under it."""
    return f"/v1/jobs/{job_id}"


def frame_path(job_id: str, index: int) -> str:
    """The URL path of an animation's finished frame `index`."""
    return f"{job_path(job_id)}/frames/{int(index)}"


def public_event_data(job_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event's data as the SSE stream sends it, with the URLs the jobs layer leaves out: a
    `preview`'s and a `frame`'s `url`; a `done` event's `image` / `video` flags become
    `image_url` / `video_url`."""
    if event_type == "preview" and "url" not in data:
        return {**data, "url": f"{job_path(job_id)}/preview"}
    if event_type == "frame" and "url" not in data and "frame" in data:
        return {**data, "url": frame_path(job_id, data["frame"])}
    if event_type != "done":
        return data
    public = {key: value for key, value in data.items() if key not in ("image", "video")}
    if data.get("image"):
        public["image_url"] = f"{job_path(job_id)}/image"
    if data.get("video"):
        public["video_url"] = f"{job_path(job_id)}/video"
    return public


class JobUrls(BaseModel):
    """Where the job's resources live; None where not (yet) available."""

    self: str
    events: str
    preview: str | None
    image: str | None
    video: str | None
    cancel: str
    # Animations and restyles: JSON list of the finished frames' URLs.
    frames: str | None = None


class JobPublic(BaseModel):
    """The job as the API shows it (docs/architecture.md, "Job JSON")."""

    id: str
    status: JobStatus
    params: dict[str, Any]
    seed: int | None
    iteration: int
    iterations: int
    progress: float
    eta_seconds: float | None
    loss: float | None
    # Jobs ahead of this one in the queue (0: next to start); None unless queued.
    queue_position: int | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    # A cancel was asked for and the running job has not stopped yet (it stops within a step).
    cancel_requested: bool
    urls: JobUrls
    kind: JobKind = JobKind.picture
    # Animations and restyles: the frame being made (0-based), frames in all, frames finished,
    # and the iteration within the frame being made (of frame_iterations).
    frame: int | None = None
    frames: int | None = None
    frames_done: int = 0
    frame_iteration: int | None = None
    frame_iterations: int | None = None

    @classmethod
    def from_job(cls, job: Job, queue_position: int | None = None) -> JobPublic:
        """Build the public view of a stored job."""
        base = job_path(job.id)
        finished = job.status == JobStatus.succeeded
        animated = job.kind != JobKind.picture
        # An animation's video is there once it succeeded, or after a cancel (a partial video).
        video_ready = finished or (animated and job.status == JobStatus.canceled)
        urls = JobUrls(
            self=base,
            events=f"{base}/events",
            preview=f"{base}/preview" if job.preview_file else None,
            image=f"{base}/image" if finished and job.image_file else None,
            video=f"{base}/video" if video_ready and job.video_file else None,
            cancel=f"{base}/cancel",
            frames=f"{base}/frames" if animated else None,
        )
        active = job.status in ACTIVE_STATUSES
        return cls(
            id=job.id,
            status=job.status,
            params=job.params,
            seed=job.seed,
            iteration=job.iteration,
            iterations=job.iterations,
            progress=round(job.progress, 4),
            eta_seconds=job.eta_seconds if active else None,
            loss=job.loss,
            queue_position=queue_position if job.status == JobStatus.queued else None,
            attempt=job.attempt,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
            cancel_requested=job.cancel_requested and active,
            urls=urls,
            kind=job.kind,
            frame=job.frame if animated else None,
            frames=job.frames,
            frames_done=job.frames_done,
            frame_iteration=job.frame_iteration if animated else None,
            frame_iterations=job.frame_iterations if animated else None,
        )


class JobsPublic(BaseModel):
    """A page of jobs, newest first."""

    items: list[JobPublic]
    total: int
    limit: int
    offset: int


def public_json(job: Job) -> str:
    """The job's public JSON without a queue position: the body a webhook delivery posts."""
    return JobPublic.from_job(job).model_dump_json()
