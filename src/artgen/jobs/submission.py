"""Putting a job's attempt on the queue: the payload a worker gets, and the enqueue itself."""

from __future__ import annotations

from typing import Any

from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import Job
from artgen.jobs.store import JobStore


def build_payload(store: JobStore, job: Job) -> dict[str, Any]:
    """Everything a worker needs for the job's current attempt (inputs and latest checkpoint)."""
    payload: dict[str, Any] = {"params": job.params, "image_prompts": []}
    if job.init_image_file:
        payload["init_image"] = store.read_file(job.id, job.init_image_file)
    payload["image_prompts"] = [store.read_file(job.id, name) for name in job.image_prompt_files]
    if job.source_video_file:
        payload["source_video"] = store.read_file(job.id, job.source_video_file)
    if job.checkpoint_file:
        payload["checkpoint"] = store.read_file(job.id, job.checkpoint_file)
    return payload


def enqueue_job(queue: JobQueue, store: JobStore, job: Job) -> None:
    """Publish the job's current attempt, then queue it in creation order (requeues included)."""
    queue.set_control(job.id, job.attempt)
    queue.enqueue(job.id, job.attempt, build_payload(store, job), order=job.created_at.timestamp())
