"""JobService: what the API (and the CLI) call to submit, inspect, cancel and delete jobs."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from artgen.config import Settings
from artgen.jobs.collector import Collector
from artgen.jobs.events import status_events
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import (
    ACTIVE_STATUSES,
    Job,
    JobCreate,
    JobEvent,
    JobStatus,
    ServiceHealth,
    WorkerInfo,
    utcnow,
)
from artgen.jobs.store import (
    INIT_IMAGE,
    SOURCE_VIDEO_NAMES,
    JobStore,
    frame_file_name,
    prompt_file_name,
    validate_job_id,
)
from artgen.jobs.submission import enqueue_job
from artgen.jobs.webhook_fields import WEBHOOK_FIELDS
from artgen.jobs.webhooks import Deliverer, WebhookRefused, check_webhook, webhooks_enabled

logger = logging.getLogger("artgen.jobs.service")

# A worker silent this long is no longer listed in the health (it stays visible for a while after
# a crash, so an operator sees it).
FORGET_WORKERS_AFTER_S = 3600.0

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


class InvalidJob(ValueError):
    """The request is well-formed but cannot run here (unknown model, too big ...): 422."""

    def __init__(self, field: str, message: str, details: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        # Every (field, message) found, the first being (field, message).
        self.details = list(details) or [(field, message)]


class ActiveLimit(Exception):
    """The owner already has `limit` queued or running jobs (answer 429)."""

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"{active} queued or running jobs (limit {limit})")
        self.active = active
        self.limit = limit


class ShuttingDown(Exception):
    """The service is draining after SIGTERM: new jobs are refused (503)."""


@dataclass(frozen=True)
class SourceVideo:
    """A restyle's uploaded video, already probed: its bytes, container and what it holds."""

    data: bytes
    container: str  # a key of store.SOURCE_VIDEO_NAMES: mp4, webm, gif
    frames: int  # the frames the restyle makes (the source's, capped by the server's limit)
    fps: float
    width: int = 0  # the source's size: the restyle's when the job gives none (0: unknown)
    height: int = 0


# C0 controls other than tab/newline/CR, DEL and C1 controls: never meaningful in a prompt.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def validate_request(
    settings: Settings, request: JobCreate, image_prompt_count: int, has_source: bool = False
) -> None:
    """The server's checks on top of the schema's (the one place; InvalidJob lists each problem).

    A job needs something to aim at: text prompts, image prompts or noise prompts.
    """
    problems = request.kind_problems(has_source=has_source, video=request.video)
    prompts = request.prompt_field
    texts = [(prompts, request.prompts), ("noise_prompts", request.noise_prompts)]
    texts += [(f"schedule.{i}.prompts", entry.prompts) for i, entry in enumerate(request.schedule)]
    texts += [
        (f"prompt_schedule.{i}.prompt", entry.prompt)
        for i, entry in enumerate(request.prompt_schedule or [])
    ]
    for field, text in texts:
        if field != "noise_prompts" and len(text) > settings.max_prompt_chars:
            problems.append((field, f"at most {settings.max_prompt_chars} characters"))
        if _CONTROL_CHARS.search(text):
            problems.append((field, "contains control characters (tabs and newlines are fine)"))
    if not (request.prompts.strip() or image_prompt_count or request.noise_prompts.strip()):
        problems.append((prompts, "must not be empty (or give image or noise prompts)"))
    for name in ("width", "height"):
        if getattr(request, name) > settings.max_size:
            problems.append((name, f"at most {settings.max_size} on this server"))
    if request.iterations > settings.max_iterations:
        problems.append(("iterations", f"at most {settings.max_iterations} on this server"))
    for name in ("image_prompt_weights", "image_prompt_stops"):
        values = getattr(request, name)
        if values and len(values) != image_prompt_count:
            what = name.rsplit("_", 1)[1]  # weights, stops
            problems.append((name, f"{len(values)} {what} for {image_prompt_count} image prompts"))
    if problems:
        raise InvalidJob(*problems[0], details=problems)
    _check_models(settings, request)
    _check_webhook(settings, request)


def _check_webhook(settings: Settings, request: JobCreate) -> None:
    """InvalidJob for a webhook this server will not call (resolved and checked now, and again
    before every delivery)."""
    if request.webhook is None:
        if request.webhook_events is not None:
            raise InvalidJob("webhook_events", "needs a `webhook` URL to call")
        return
    try:
        check_webhook(settings, request.webhook)
    except WebhookRefused as exc:
        raise InvalidJob("webhook", str(exc)) from None


def _check_models(settings: Settings, request: JobCreate) -> None:
    """InvalidJob for model names the catalog cannot build (nothing is loaded here)."""
    from artgen.models.catalog import Catalog, UnknownModel

    catalog = Catalog(settings.home)
    vqgan = request.model or settings.model
    clips = request.clip_models or settings.clip_models_for(request.model)
    try:
        catalog.validate(vqgan, clips)
    except UnknownModel as exc:
        field = "model" if vqgan not in catalog.vqgan_names() else "clip_models"
        raise InvalidJob(field, str(exc)) from None


class JobService:
    """Submit/get/list/cancel/delete jobs; collector thread applies worker reports."""

    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.collector = Collector(settings, store, queue)
        # Sends the outbox's webhook deliveries (None while webhooks are off: they wait there).
        self.webhooks = Deliverer(settings, store) if webhooks_enabled(settings) else None
        self.draining = False
        self._submit_lock = threading.Lock()
        self._started = False
        # worker id -> (its last heartbeat stamp, how far its clock is behind ours or None):
        # hosts' clocks may disagree, so liveness is judged on our clock once the offset is known.
        self._worker_clocks: dict[str, tuple[float, float | None]] = {}
        self._beats_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> JobService:
        """Store under settings.data_dir and the queue of settings.resolved_queue_url."""
        store = JobStore(settings.data_dir)
        return cls(settings, store, JobQueue.from_url(settings.resolved_queue_url))

    def start(self) -> None:
        """Recover from a previous run, then start the collector and reaper (no GPU here)."""
        if self._started:
            return
        self.collector.recover()
        self.collector.start()
        if self.webhooks is not None:
            self.webhooks.start()
        self._started = True

    def stop(self) -> None:
        """Stop the collector after a last pass (stop the embedded worker before this)."""
        if self._started:
            self.collector.stop()
            if self.webhooks is not None:
                self.webhooks.stop()
            self._started = False

    def close(self) -> None:
        """Stop and release the database and queue connections."""
        self.stop()
        self.store.close()
        self.queue.close()

    # Submitting

    def submit(
        self,
        request: JobCreate,
        *,
        init_image: bytes | None = None,
        image_prompts: Sequence[bytes] = (),
        owner: str | None = None,
        idempotency_key: str | None = None,
        max_active: int = 0,
        admit: Callable[[], None] | None = None,
        source_video: SourceVideo | None = None,
    ) -> tuple[Job, bool]:
        """Create and enqueue a job; (job, created) where created is False for a replay.

        A restyle job comes with its `source_video` (probed by the caller before this).

        A replay (same key, same body) returns the existing job before any limit is looked at.
        Otherwise `admit()` (the caller's rate limit), the owner's `max_active` queued or running
        jobs (ActiveLimit) and the queue limit are checked under the lock that creates the job,
        so concurrent submissions cannot pass a limit together.
        """
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry on another instance")
        validate_request(self.settings, request, len(image_prompts), source_video is not None)
        key_hash = body_hash = None
        if idempotency_key is not None:
            key_hash = _sha256(json.dumps([owner, idempotency_key]).encode())
            source_data = source_video.data if source_video is not None else None
            body_hash = _body_hash(request, init_image, image_prompts, source_data)
        with self._submit_lock:
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
            job = self._create(
                request, init_image, image_prompts, owner, key_hash, body_hash, source_video
            )
        self._enqueue(job)
        return job, True

    def _create(
        self,
        request: JobCreate,
        init_image: bytes | None,
        image_prompts: Sequence[bytes],
        owner: str | None,
        key_hash: str | None,
        body_hash: str | None,
        source_video: SourceVideo | None = None,
    ) -> Job:
        job_id = str(uuid.uuid4())
        seed = request.seed if request.seed is not None else secrets.randbelow(RANDOM_SEED_LIMIT)
        # The record names the models and seed it will actually run with.
        resolved = {
            "seed": seed,
            "model": request.model or self.settings.model,
            "clip_models": request.clip_models or self.settings.clip_models_for(request.model),
        }
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
            if init_image is not None:
                self.store.write_file(job_id, INIT_IMAGE, init_image)
                job.init_image_file = INIT_IMAGE
            for index, data in enumerate(image_prompts):
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

    def _enqueue(self, job: Job) -> None:
        try:
            enqueue_job(self.queue, self.store, job)
        except Exception as exc:
            # The record is durable: the collector's audit enqueues it once the queue is back.
            logger.error("job %s: queue unreachable (%s), will enqueue later", job.id, exc)

    # Reading

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, if it exists and (with an owner) belongs to that owner."""
        try:
            job_id = validate_job_id(job_id)
        except ValueError:
            return None
        job = self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def list(
        self,
        owner: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and the total."""
        return self.store.list_jobs(owner=owner, status=status, limit=limit, offset=offset)

    def events(self, job_id: str, after: int = 0) -> builtins.list[JobEvent]:
        """The job's events with id > after, in order."""
        try:
            job_id = validate_job_id(job_id)
        except ValueError:
            return []
        return self.store.events(job_id, after)

    def preview_file(self, job_id: str) -> tuple[Path, int] | None:
        """(path of the latest preview PNG, its iteration), or None before the first."""
        job = self.get(job_id)
        if job is None or job.preview_file is None or job.preview_iteration is None:
            return None
        return self.store.file_path(job.id, job.preview_file), job.preview_iteration

    def image_file(self, job_id: str) -> Path | None:
        """Path of the final PNG of a succeeded job."""
        job = self.get(job_id)
        if job is None or job.status != JobStatus.succeeded or job.image_file is None:
            return None
        return self.store.file_path(job.id, job.image_file)

    def video_file(self, job_id: str) -> Path | None:
        """Path of the MP4 of a succeeded job that asked for one, or of an animation that
        succeeded or was canceled (then a partial video of the frames made)."""
        job = self.get(job_id)
        if job is None or job.video_file is None:
            return None
        canceled_animation = job.kind.animated and job.status == JobStatus.canceled
        if job.status != JobStatus.succeeded and not canceled_animation:
            return None
        return self.store.file_path(job.id, job.video_file)

    def frame_file(self, job_id: str, index: int) -> Path | None:
        """Path of an animation's finished frame `index`, or None (not made yet, or no such)."""
        job = self.get(job_id)
        if job is None or not 0 <= index < job.frames_done:
            return None
        return self.store.file_path(job.id, frame_file_name(index))

    def latest_job_id(self) -> str | None:
        """The newest job's id (the seed's progress endpoints)."""
        return self.store.latest_job_id()

    def queue_position(self, job: Job) -> int | None:
        """Jobs ahead of a queued job (0: next to start); None when not queued."""
        if job.status != JobStatus.queued:
            return None
        return self.store.queued_ahead(job)

    # Changing

    def cancel(self, job_id: str, owner: str | None = None) -> Job | None:
        """Cancel (idempotent): a queued job never starts, a running one stops within a step."""
        job = self.get(job_id, owner)
        if job is None or job.status.terminal:
            return job

        def mutate(current: Job) -> list | None:
            if current.status == JobStatus.queued:
                current.status = JobStatus.canceled
                current.finished_at = utcnow()
                current.eta_seconds = None
                return status_events(current)
            if current.status == JobStatus.running:
                current.cancel_requested = True
            return None

        # Durable first: the record says canceled (or cancel_requested), and a canceled job owes
        # the queue a cleanup; the collector's audit repeats the flag until the queue confirms.
        updated = self.store.update(job.id, mutate)
        if updated is None:
            return None
        if updated.status.terminal and updated.status != JobStatus.canceled:
            return updated  # it ended on its own meanwhile
        try:
            self.queue.set_control(updated.id, updated.attempt, cancel=True)
        except Exception:
            logger.error("job %s: cancel flag not set yet (queue unreachable)", job.id)
        return updated

    def delete(self, job_id: str, owner: str | None = None) -> bool:
        """Remove the record and its files; a queued or running job is stopped first.

        The store records what the queue still owes (one of concurrent deletes gets the job); the
        worker is told now when the queue is reachable, and the collector's audit repeats it and
        clears every key of the job once no task or worker can still act on it."""
        job = self.get(job_id, owner)
        if job is None:
            return False
        removed = self.store.delete(job.id)
        if removed is None:
            return False  # a concurrent delete removed it and stops it
        if removed.status in ACTIVE_STATUSES:
            try:
                self.queue.set_control(removed.id, removed.attempt, cancel=True, deleted=True)
                self.queue.clear_job(removed.id, removed.attempt, keep_control=True)
                if removed.kind.animated:
                    self.queue.clear_frames(removed.id, removed.attempt, removed.frames_done)
            except Exception:
                logger.warning("job %s: worker not told yet (queue unreachable)", removed.id)
        return True

    # Health

    def health(self) -> ServiceHealth:
        """Queue reachability, workers (alive, busy, devices, model errors), queue depth."""
        counts = self.store.count_by_status()
        health = ServiceHealth(
            queue_ok=True,
            queued=counts.get(JobStatus.queued.value, 0),
            running=counts.get(JobStatus.running.value, 0),
            draining=self.draining,
        )
        try:
            self.queue.ping()
            registrations = self.queue.workers()
        except Exception as exc:
            health.queue_ok = False
            health.queue_error = f"{type(exc).__name__}: {exc}"
            return health
        now = time.time()
        for data in registrations:
            worker = WorkerInfo.model_validate(data)
            silence = self._silence(worker, now)
            worker.alive = silence <= self.settings.lease_seconds and not worker.stopped
            # Workers gone long ago (replaced, scaled down) drop out of the list.
            if worker.alive or silence <= FORGET_WORKERS_AFTER_S:
                health.workers.append(worker)
        with self._beats_lock:
            listed = {worker.id for worker in health.workers}
            for worker_id in [key for key in self._worker_clocks if key not in listed]:
                del self._worker_clocks[worker_id]
        return health

    def _silence(self, worker: WorkerInfo, now: float) -> float:
        """Seconds since its last heartbeat, read on our clock once its clock offset is known."""
        with self._beats_lock:
            stamp, offset = self._worker_clocks.get(worker.id, (None, None))
            if stamp is not None and worker.heartbeat != stamp:
                # A fresh heartbeat was written since our last look: the smallest gap between it
                # and our clock estimates the offset (a dead worker's last gap is only larger).
                gap = now - worker.heartbeat
                offset = gap if offset is None else min(offset, gap)
            self._worker_clocks[worker.id] = (worker.heartbeat, offset)
        return now - (worker.heartbeat + (offset or 0.0))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _body_hash(
    request: JobCreate,
    init_image: bytes | None,
    image_prompts: Sequence[bytes],
    source_video: bytes | None = None,
) -> str:
    """Hash of everything that defines the job (not the random seed picked later)."""
    digest = hashlib.sha256(request.model_dump_json().encode())
    digest.update(_sha256(init_image or b"").encode())
    for data in image_prompts:
        digest.update(_sha256(data).encode())
    if source_video is not None:
        digest.update(b"source_video" + _sha256(source_video).encode())
    return digest.hexdigest()
