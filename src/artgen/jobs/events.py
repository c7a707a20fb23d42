"""The events a job's changes record (and its SSE stream sends): progress, status, done."""

from __future__ import annotations

from typing import Any

from artgen.jobs.schemas import Job, JobStatus

Events = list[tuple[str, dict[str, Any]]]


def progress_event(job: Job) -> tuple[str, dict[str, Any]]:
    """The SSE `progress` event of a job's current state."""
    return (
        "progress",
        {
            "iteration": job.iteration,
            "iterations": job.iterations,
            "progress": round(job.progress, 4),
            "loss": job.loss,
            "eta_seconds": job.eta_seconds,
            # Animations: the frame being made, of how many, and the iteration within it.
            "frame": job.frame,
            "frames": job.frames,
            "frame_iteration": job.frame_iteration,
            "frame_iterations": job.frame_iterations,
        },
    )


def status_events(job: Job) -> Events:
    """`status`, plus `done` when the job is terminal."""
    status: dict[str, Any] = {"status": job.status.value}
    if job.error is not None:
        status["error"] = job.error.model_dump()
    events: Events = [("status", status)]
    if job.status.terminal:
        done = dict(status)
        # What there is to fetch; the API turns these into image_url / video_url.
        if job.status == JobStatus.succeeded:
            done["image"] = True
        if job.video_file and (job.status == JobStatus.succeeded or job.kind.animated):
            done["video"] = True  # a canceled animation's: its partial video
        events.append(("done", done))
    return events
