"""Submitting a job: limits checked under one lock, files and record stored, the attempt enqueued.

Also what a requeue needs: the payload of a job's current attempt read back from the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from artgen.config import Settings
from artgen.jobs.events import status_events
from artgen.jobs.job_files import INIT_IMAGE, SOURCE_VIDEO_NAMES, prompt_file_name
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import Job, JobCreate
from artgen.jobs.store import JobStore
from artgen.jobs.webhook_fields import WEBHOOK_FIELDS

logger = logging.getLogger("artgen.jobs.submission")

# Seeds picked for jobs that do not give one stay in a range every tool handles.
RANDOM_SEED_LIMIT = 2**31


class QueueFull(Exception):
    """queue_limit jobs are already queued or running (answer 503 with Retry-After)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full ({limit} jobs waiting or running); retry later")
        self.limit = limit


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with another request body (answer 409)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("this Idempotency-Key was already used with a different request")
        self.job_id = job_id


class ActiveLimit(Exception):
    """The owner already has `limit` queued or running jobs (answer 429)."""

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"{active} queued or running jobs (limit {limit})")
        self.active = active
        self.limit = limit


@dataclass(frozen=True)
class SourceVideo:
    """A restyle's uploaded video, already probed: its bytes, container and what it holds."""

    data: bytes
    container: str  # a key of store.SOURCE_VIDEO_NAMES: mp4, webm, gif
    frames: int  # the frames the restyle makes (the source's, capped by the server's limit)
    fps: float
    width: int = 0  # the source's size: the restyle's when the job gives none (0: unknown)
    height: int = 0


@dataclass(frozen=True)
class JobInputs:
    """The files a submission brings, held in memory from the request to the queue."""

    init_image: bytes | None = None
    image_prompts: Sequence[bytes] = field(default_factory=tuple)
    source_video: SourceVideo | None = None


def build_payload(store: JobStore, job: Job) -> dict[str, Any]:
    """Everything a worker needs for the job's current attempt, read from the job's files
    (inputs and latest checkpoint): a requeued or re-enqueued attempt's."""
    payload: dict[str, Any] = {"params": job.params, "image_prompts": []}
    if job.init_image_file:
        payload["init_image"] = store.read_file(job.id, job.init_image_file)
    payload["image_prompts"] = [store.read_file(job.id, name) for name in job.image_prompt_files]
    if job.source_video_file:
        payload["source_video"] = store.read_file(job.id, job.source_video_file)
    if job.checkpoint_file:
        payload["checkpoint"] = store.read_file(job.id, job.checkpoint_file)
    return payload


def fresh_payload(job: Job, inputs: JobInputs) -> dict[str, Any]:
    """A new job's first attempt from the bytes the submission holds (nothing read back)."""
    payload: dict[str, Any] = {"params": job.params, "image_prompts": list(inputs.image_prompts)}
    if inputs.init_image is not None:
        payload["init_image"] = inputs.init_image
    if inputs.source_video is not None:
        payload["source_video"] = inputs.source_video.data
    return payload


def enqueue_job(
    queue: JobQueue, store: JobStore, job: Job, inputs: JobInputs | None = None
) -> None:
    """Publish the job's current attempt, then queue it in creation order (requeues included).

    `inputs`: a fresh submission's bytes; without them the payload is read from the store."""
    payload = build_payload(store, job) if inputs is None else fresh_payload(job, inputs)
    queue.enqueue(job.id, job.attempt, payload, order=job.created_at.timestamp())


class Submitter:
    """Creates jobs: replays, the owner's and the queue's limits, files, record, queue."""

    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self._lock = threading.Lock()

    def submit(
        self,
        request: JobCreate,
        inputs: JobInputs,
        *,
        owner: str | None = None,
        idempotency_key: str | None = None,
        max_active: int = 0,
        admit: Callable[[], None] | None = None,
    ) -> tuple[Job, bool]:
        """Create and enqueue a validated job; (job, created) where created is False for a replay.

        A replay (same key, same body) returns the existing job before any limit is looked at.
        Otherwise `admit()` (the caller's rate limit), the owner's `max_active` queued or running
        jobs (ActiveLimit) and the queue limit are checked under the lock that creates the job,
        so concurrent submissions cannot pass a limit together.
        """
        key_hash = body_hash = None
        if idempotency_key is not None:
            key_hash = _sha256(json.dumps([owner, idempotency_key]).encode())
            body_hash = _body_hash(request, inputs)
        with self._lock:
            if key_hash is not None:
                existing = self.store.idempotent_job(key_hash)
                if existing is not None:
                    job_id, recorded_hash = existing
                    if recorded_hash != body_hash:
                        raise IdempotencyConflict(job_id)
                    job = self.store.get(job_id)
                    if job is not None:
                        return job, False
            if admit is not None:
                admit()
            if max_active > 0 and owner is not None:
                active = self.store.count_active(owner=owner)
                if active >= max_active:
                    raise ActiveLimit(active, max_active)
            if self.store.count_active() >= self.settings.queue_limit:
                raise QueueFull(self.settings.queue_limit)
            job = self._create(request, inputs, owner, key_hash, body_hash)
        try:
            enqueue_job(self.queue, self.store, job, inputs)
        except Exception as exc:
            # The record is durable: the collector's audit enqueues it once the queue is back.
            logger.error("job %s: queue unreachable (%s), will enqueue later", job.id, exc)
        return job, True

    def _create(
        self,
        request: JobCreate,
        inputs: JobInputs,
        owner: str | None,
        key_hash: str | None,
        body_hash: str | None,
    ) -> Job:
        job_id = str(uuid.uuid4())
        seed = request.seed if request.seed is not None else secrets.randbelow(RANDOM_SEED_LIMIT)
        # The record names the models and seed it will actually run with.
        resolved: dict[str, Any] = {
            "seed": seed,
            "model": request.model or self.settings.model,
            "clip_models": request.clip_models or self.settings.clip_models_for(request.model),
        }
        source_video = inputs.source_video
        if source_video is not None:
            resolved.update(self._source_fields(request, source_video))
        request = request.model_copy(update=resolved)
        # The webhook URL stays in the record only: not in params, the PNG's metadata or the API.
        params = request.stored_params(exclude=set(WEBHOOK_FIELDS))
        job = Job(
            id=job_id,
            params=params,
            owner=owner,
            seed=seed,
            iterations=request.total_iterations(),
            idempotency_key_hash=key_hash,
            kind=request.kind,
            frames=params.get("frames") if request.kind.animated else None,
        )
        if request.webhook is not None:
            job.webhook, job.webhook_events = request.webhook, request.resolved_webhook_events()
        # Files first, then the record that points at them; a refused submission leaves nothing.
        try:
            if inputs.init_image is not None:
                self.store.write_file(job_id, INIT_IMAGE, inputs.init_image)
                job.init_image_file = INIT_IMAGE
            for index, data in enumerate(inputs.image_prompts):
                name = prompt_file_name(index)
                self.store.write_file(job_id, name, data)
                job.image_prompt_files.append(name)
            if source_video is not None:
                name = SOURCE_VIDEO_NAMES[source_video.container]
                self.store.write_file(job_id, name, source_video.data)
                job.source_video_file, job.source_fps = name, source_video.fps
            idempotency = (key_hash, body_hash) if key_hash and body_hash else None
            self.store.create(job, status_events(job), idempotency)
        except BaseException:
            self.store.remove_dir(job_id)
            raise
        return job

    def _source_fields(self, request: JobCreate, source: SourceVideo) -> dict[str, int]:
        """A restyle makes the source's frames at (about) its rate (the MP4 keeps the exact one),
        at the source's size unless the job gives one (within the server's size limits)."""
        fields = {"frames": source.frames, "fps": min(60, max(1, round(source.fps)))}
        for name, size in (("width", source.width), ("height", source.height)):
            if name not in request.model_fields_set and size > 0:
                fields[name] = min(self.settings.max_size, max(16, size))
        return fields


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _body_hash(request: JobCreate, inputs: JobInputs) -> str:
    """Hash of everything that defines the job (not the random seed picked later)."""
    digest = hashlib.sha256(request.model_dump_json().encode())
    digest.update(_sha256(inputs.init_image or b"").encode())
    for data in inputs.image_prompts:
        digest.update(_sha256(data).encode())
    if inputs.source_video is not None:
        digest.update(b"source_video" + _sha256(inputs.source_video.data).encode())
    return digest.hexdigest()
