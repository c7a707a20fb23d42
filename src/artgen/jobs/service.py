"""JobService: what the API (and the CLI) call to submit, inspect, cancel and delete jobs."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from artgen.config import Settings
from artgen.jobs.collector import ReportCollector
from artgen.jobs.events import status_events
from artgen.jobs.job_files import frame_file_name, validate_job_id
from artgen.jobs.outbox import PublicJson
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import (
    ACTIVE_STATUSES,
    Job,
    JobCreate,
    JobEvent,
    JobStatus,
    ServiceHealth,
    utcnow,
)
from artgen.jobs.source_video import VideoUpload, probe_upload
from artgen.jobs.store import JobStore
from artgen.jobs.submission import JobInputs, SourceVideo, Submitter
from artgen.jobs.validation import validate_request
from artgen.jobs.webhooks import Deliverer, webhooks_enabled
from artgen.jobs.worker_health import WorkerClocks

logger = logging.getLogger("artgen.jobs.service")


class ShuttingDown(Exception):
    """The service is draining after SIGTERM: new jobs are refused (503)."""


class JobService:
    """Submit/get/list/cancel/delete jobs; collector thread applies worker reports."""

    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.collector = ReportCollector(settings, store, queue)
        self.submitter = Submitter(settings, store, queue)
        # Sends the outbox's webhook deliveries (None while webhooks are off: they wait there).
        self.webhooks = Deliverer(settings, store) if webhooks_enabled(settings) else None
        self.worker_clocks = WorkerClocks()
        # Set when the server begins to drain (SIGTERM): submissions are refused from then on.
        self.draining = False
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, public_json: PublicJson | None = None) -> JobService:
        """Store under settings.data_dir and the queue of settings.resolved_queue_url;
        `public_json` renders the body of webhook deliveries (the API's api.schemas.public_json)."""
        store = JobStore(settings.data_dir, public_json)
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

    def validate(
        self, request: JobCreate, image_prompt_count: int = 0, source: VideoUpload | None = None
    ) -> SourceVideo | None:
        """Every server-side check of a submission, once: draining, the request's fields against
        this server's limits, its models and its webhook (InvalidJob lists each problem), then
        a restyle's source video probed (InvalidVideo); the probed source, if any."""
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry on another instance")
        validate_request(self.settings, request, image_prompt_count, source is not None)
        return probe_upload(source, self.settings.video_limits()) if source is not None else None

    def submit(
        self,
        request: JobCreate,
        *,
        init_image: bytes | None = None,
        image_prompts: Sequence[bytes] = (),
        owner: str | None = None,
        idempotency_key: str | None = None,
        max_active: int | None = None,
        admit: Callable[[], None] | None = None,
        source_video: VideoUpload | None = None,
    ) -> tuple[Job, bool]:
        """Validate, create and enqueue a job; (job, created) where created is False for a replay.

        A restyle job comes with its `source_video` (probed here, by validate()).
        `admit()` (the caller's rate limit), the owner's `max_active` queued or running jobs
        (None: the server's max_active_jobs_per_key; 0: no limit) and
        the queue limit are checked atomically by the Submitter; a replay counts against none.
        """
        source = self.validate(request, len(image_prompts), source_video)
        inputs = JobInputs(init_image, tuple(image_prompts), source)
        return self.submitter.submit(
            request,
            inputs,
            owner=owner,
            idempotency_key=idempotency_key,
            max_active=self.settings.max_active_jobs_per_key if max_active is None else max_active,
            admit=admit,
        )

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
        if job.status == JobStatus.queued and job.kind.animated and job.frames_done > 0:
            # A queued animation with frames (requeued, or running while the collector has taken
            # its frames but not yet the progress that marks it running) ends as a running one
            # does: its frames so far become its partial video, and a worker on it is told to stop.
            return self.collector.transitions.finish(job.id, job.attempt, JobStatus.canceled)

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
        health.workers = self.worker_clocks.listed(
            registrations, time.time(), self.settings.lease_seconds
        )
        return health
