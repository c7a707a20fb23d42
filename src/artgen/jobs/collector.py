"""Collector (API side): worker reports -> job records, files and events; lease reaper; recovery."""

from __future__ import annotations

import errno
import logging
import threading
import time
from typing import Any

from artgen.config import Settings
from artgen.jobs.events import Events, progress_event, status_events
from artgen.jobs.frames import clear_frame_keys, collect_frames, frames_on_disk, video_files
from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.schemas import Job, JobError, JobStatus, utcnow
from artgen.jobs.store import CHECKPOINT, FINAL, PREVIEW, VIDEO, JobStore, QueueCleanup
from artgen.jobs.submission import enqueue_job

logger = logging.getLogger("artgen.jobs.collector")

POLL_INTERVAL_S = 0.2

class Collector:
    """Polls the queue storage for active jobs and applies what workers reported."""

    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_audit = 0.0
        # Running jobs whose attempt has no trace at all in the queue: when first seen so.
        self._silent_since: dict[tuple[str, int], float] = {}
        # (job, attempt) -> (the worker's latest time stamp, our time when it last changed):
        # silence is judged by our clock, since a worker host's clock may be off.
        self._last_sign: dict[tuple[str, int], tuple[float, float]] = {}
        # (job, attempt) -> our time when the attempt was first seen working: a step that never
        # returns keeps heart-beating, so the job timeout is also enforced here.
        self._attempt_seen: dict[tuple[str, int], float] = {}
        # Ended jobs still owing a queue cleanup -> (a worker's latest sign, our time when it
        # changed): a worker still running such an attempt is told to stop until it is silent.
        self._ended_signs: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        # Last error talking to the queue (None when the last poll worked).
        self.queue_error: str | None = None

    # Thread

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="artgen-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, after one last pass so nothing reported is left behind."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        try:
            self.poll()
        except Exception as exc:
            logger.warning("final collector pass failed: %s", exc)

    def _loop(self) -> None:
        delay = POLL_INTERVAL_S
        while not self._stop.is_set():
            try:
                self.poll()
                delay = POLL_INTERVAL_S
            except Exception as exc:
                self.queue_error = f"{type(exc).__name__}: {exc}"
                logger.warning("collector: %s (retrying)", self.queue_error)
                delay = min(delay * 2, 5.0)
            self._stop.wait(delay)

    # One pass

    def poll(self, now: float | None = None) -> None:
        """Apply reports of every active job, reap lost ones, audit the queue now and then."""
        with self._lock:
            jobs = self.store.active()
            if jobs:
                keys = [
                    Keys.attempt_key(kind, job.id, job.attempt)
                    for job in jobs
                    for kind in Keys.ATTEMPT_KINDS
                ]
                reports = self.queue.peek_many(keys)
                for job in jobs:
                    self._apply(job, reports, time.time() if now is None else now)
            current = {(job.id, job.attempt) for job in jobs}
            for key in [key for key in self._last_sign if key not in current]:
                del self._last_sign[key]
            for key in [key for key in self._attempt_seen if key not in current]:
                del self._attempt_seen[key]
            self.queue_error = None
            if time.monotonic() - self._last_audit >= self.grace:
                self._last_audit = time.monotonic()
                self._audit(grace=self.grace)

    @property
    def grace(self) -> float:
        """How often the audit runs, and how long a fresh enqueue or end is left alone."""
        return max(self.settings.lease_seconds, 1.0)

    def audit(self, now: float | None = None) -> None:
        """Run the audit now (it also runs every `grace` seconds from poll)."""
        with self._lock:
            self._last_audit = time.monotonic()
            self._audit(grace=self.grace, now=now)

    def _apply(self, job: Job, reports: dict[str, Any], now: float) -> None:
        def report(kind: str) -> Any:
            value = reports.get(Keys.attempt_key(kind, job.id, job.attempt))
            # Fencing: a value of another attempt (should never sit under this key) is ignored.
            if isinstance(value, dict) and value.get("attempt", job.attempt) == job.attempt:
                return value
            return None

        if job.kind.animated:
            # Before the checkpoint and the result: each counts only frames already sent.
            job = collect_frames(self.queue, self.store, job)
        claim, heartbeat, progress = report("claim"), report("heartbeat"), report("progress")
        if progress is not None or heartbeat is not None:
            self._apply_progress(job, progress, heartbeat)
        if report("preview") is not None:
            self._apply_preview(job)
        if report("checkpoint") is not None:
            self._apply_checkpoint(job)
        if report("result") is not None:
            self._apply_result(job)
            return
        last_sign = max(
            (value["time"] for value in (claim, heartbeat, progress) if value), default=None
        )
        key = (job.id, job.attempt)
        silent_since: float | None = None
        if last_sign is not None:
            self._silent_since.pop(key, None)
            seen = self._last_sign.get(key)
            if seen is None or seen[0] != last_sign:
                seen = self._last_sign[key] = (last_sign, now)
            silent_since = seen[1]
        elif job.status == JobStatus.running:
            # Its keys are gone (the queue lost its data): give the worker one lease to reappear.
            silent_since = self._silent_since.setdefault(key, now)
        if last_sign is not None and self._timed_out(key, now):
            logger.error("job %s attempt %s: no result within the job timeout", *key)
            message = (
                f"the generation did not finish within {self.settings.job_timeout_seconds:g} s"
            )
            self.finish(
                job.id, job.attempt, JobStatus.failed, JobError(code="timeout", message=message)
            )
            return
        if silent_since is not None and now - silent_since > self.settings.lease_seconds:
            self._silent_since.pop(key, None)
            self._last_sign.pop(key, None)
            self.lost(job.id, job.attempt)

    def _timed_out(self, key: tuple[str, int], now: float) -> bool:
        """True once an attempt has run past the job timeout plus a lease of grace.

        The worker enforces the timeout itself between iterations; this catches a step that never
        returns (its heartbeat thread keeps the lease alive)."""
        first_seen = self._attempt_seen.setdefault(key, now)
        limit = self.settings.job_timeout_seconds + self.settings.lease_seconds
        return now - first_seen > limit

    def _apply_progress(
        self, job: Job, progress: dict[str, Any] | None, heartbeat: dict[str, Any] | None
    ) -> None:
        changed = progress is not None and (
            progress["iteration"] != job.iteration or progress.get("loss") != job.loss
        )
        if job.status == JobStatus.running and not changed:
            return
        attempt = job.attempt

        def mutate(current: Job) -> Events | None:
            if current.attempt != attempt or current.status.terminal:
                return None
            events: Events = []
            if current.status == JobStatus.queued:
                current.status = JobStatus.running
                current.started_at = current.started_at or utcnow()
                events += status_events(current)
            source = progress or heartbeat or {}
            current.worker_id = source.get("worker_id", current.worker_id)
            if progress is not None:
                current.iteration = int(progress["iteration"])
                current.loss = progress.get("loss")
                current.eta_seconds = progress.get("eta_seconds")
                current.start_iteration = progress.get("start_iteration")
                current.frame = progress.get("frame", current.frame)
                current.frame_iteration = progress.get("frame_iteration")
                current.frame_iterations = progress.get("frame_iterations")
                current.start_frame = progress.get("start_frame")
                if progress.get("seed") is not None:
                    current.seed = int(progress["seed"])
                events.append(progress_event(current))
            return events

        self.store.update(job.id, mutate)

    def _apply_preview(self, job: Job) -> None:
        preview = self.queue.pop(Keys.preview(job.id, job.attempt))
        if not isinstance(preview, dict) or preview.get("attempt") != job.attempt:
            return
        try:
            self.store.write_file(job.id, PREVIEW, preview["png"])
        except OSError as exc:
            logger.warning("job %s: preview not saved (%s)", job.id, exc)
            return
        iteration = int(preview["iteration"])

        def mutate(current: Job) -> Events | None:
            if current.attempt != job.attempt:
                return None
            current.preview_file, current.preview_iteration = PREVIEW, iteration
            return [("preview", {"iteration": iteration, "url": f"/v1/jobs/{job.id}/preview"})]

        self._update_written(job.id, mutate)

    def _apply_checkpoint(self, job: Job) -> None:
        checkpoint = self.queue.pop(Keys.checkpoint(job.id, job.attempt))
        if not isinstance(checkpoint, dict) or checkpoint.get("attempt") != job.attempt:
            return
        frames = checkpoint.get("frame")
        if frames is not None and not frames_on_disk(self.queue, self.store, job, frames):
            return  # the previous checkpoint stays the one to resume from
        try:
            self.store.write_file(job.id, CHECKPOINT, checkpoint["state"])
        except OSError as exc:
            logger.warning("job %s: checkpoint not saved (%s)", job.id, exc)
            return
        iteration = int(checkpoint["iteration"])

        def mutate(current: Job) -> None:
            if current.attempt == job.attempt:
                current.checkpoint_file, current.checkpoint_iteration = CHECKPOINT, iteration
                current.checkpoint_frame = checkpoint.get("frame")

        self._update_written(job.id, mutate)

    def _apply_result(self, job: Job) -> None:
        result = self.queue.pop(Keys.result(job.id, job.attempt))
        if not isinstance(result, dict) or result.get("attempt") != job.attempt:
            return
        status = result.get("status")
        if status == "interrupted":
            # The worker shut down cleanly after a checkpoint: requeue without waiting the lease
            # (counted as lost when the worker found the attempt's inputs gone from the queue).
            self.requeue(job.id, job.attempt, count_as_lost=bool(result.get("lost")))
            return
        error: JobError | None = None
        files: dict[str, str] = {}
        if status == "succeeded":
            try:
                self.store.write_file(job.id, FINAL, result["png"])
                files["image_file"] = FINAL
                if result.get("mp4"):
                    self.store.write_file(job.id, VIDEO, result["mp4"])
                    files["video_file"] = VIDEO
            except OSError as exc:
                code = "disk_full" if exc.errno == errno.ENOSPC else "internal_error"
                logger.error("job %s: result not saved (%s)", job.id, exc)
                error = JobError(code=code, message="the result could not be saved on the server")
                status, files = "failed", {}
        elif status == "failed":
            error = JobError.model_validate(result.get("error") or {})
        final_status = {
            "succeeded": JobStatus.succeeded,
            "failed": JobStatus.failed,
            "canceled": JobStatus.canceled,
        }.get(str(status), JobStatus.failed)
        if final_status == JobStatus.failed and error is None:
            error = JobError(code="internal_error", message=f"unknown result status {status!r}")
        self.finish(job.id, job.attempt, final_status, error, result, files)

    def _update_written(self, job_id: str, mutate: Any) -> None:
        """Record a file just written; if the job was deleted meanwhile, remove what we wrote."""
        if self.store.update(job_id, mutate) is None:
            self.store.remove_dir(job_id)

    # Terminal states and requeues

    def finish(
        self,
        job_id: str,
        attempt: int,
        status: JobStatus,
        error: JobError | None = None,
        result: dict[str, Any] | None = None,
        files: dict[str, str] | None = None,
    ) -> Job | None:
        """Record a terminal status, then drop the checkpoint file and the queue's keys.

        Without the worker's result (timeout, worker lost, canceled meanwhile) the attempt may
        still be running somewhere: the control key stays as a stop signal, which the audit
        removes once no worker can act on it."""
        reported = result is not None
        result = result or {}
        files = dict(files or {})
        if status in (JobStatus.succeeded, JobStatus.canceled) and "video_file" not in files:
            files.update(video_files(self.store, job_id, VIDEO))  # an animation's frames so far
        checkpoint: list[str] = []

        def mutate(current: Job) -> Events | None:
            if current.attempt != attempt or current.status.terminal:
                return None
            current.status = status
            current.error = error
            current.finished_at = utcnow()
            current.eta_seconds = None
            for name, value in (files or {}).items():
                setattr(current, name, value)
            if result.get("seed") is not None:
                current.seed = int(result["seed"])
            events: Events = []
            if status == JobStatus.succeeded:
                current.iteration = current.iterations
                events.append(progress_event(current))
            elif result.get("iteration") is not None:
                current.iteration = int(result["iteration"])
            if current.checkpoint_file:
                checkpoint.append(current.checkpoint_file)
                current.checkpoint_file, current.checkpoint_iteration = None, None
            return events + status_events(current)

        job = self.store.update(job_id, mutate)
        if job is None:
            self.store.remove_dir(job_id)
        for name in checkpoint:
            self.store.remove_file(job_id, name)
        if job is not None and job.kind.animated:
            clear_frame_keys(self.queue, job_id, attempt, job.frames_done)
        try:
            self.queue.clear_job(job_id, attempt, keep_control=not reported)
            if not reported:
                self.queue.set_control(job_id, attempt, cancel=True, deleted=job is None)
        except Exception:
            # The store recorded the cleanup: the audit clears the keys once the queue is back.
            logger.warning("job %s: queue keys not cleared yet", job_id)
        return job

    def worker_gone(self, worker_id: str) -> None:
        """A worker known to be dead (our own child): requeue its running jobs now."""
        self.poll()  # its last reports first (a checkpoint written just before it died)
        with self._lock:
            for job in self.store.active():
                if job.status == JobStatus.running and job.worker_id == worker_id:
                    self.lost(job.id, job.attempt)

    def lost(self, job_id: str, attempt: int) -> None:
        """The attempt's worker went silent: requeue, or fail with worker_lost."""
        logger.warning("job %s attempt %s: worker lost", job_id, attempt)
        self.requeue(job_id, attempt, count_as_lost=True)

    def requeue(self, job_id: str, attempt: int, *, count_as_lost: bool) -> Job | None:
        """Hand the job to a new attempt (resuming from its checkpoint), within max_attempts."""
        job = self.store.get(job_id)
        if job is None or job.attempt != attempt or job.status.terminal:
            return job
        if job.cancel_requested:
            return self.finish(job_id, attempt, JobStatus.canceled)
        if count_as_lost and job.attempt >= self.settings.max_attempts:
            message = f"the worker stopped answering {job.attempt} times; giving up"
            return self.finish(
                job_id, attempt, JobStatus.failed, JobError(code="worker_lost", message=message)
            )

        def mutate(current: Job) -> Events | None:
            if current.attempt != attempt or current.status.terminal:
                return None
            current.attempt += 1
            current.status = JobStatus.queued
            current.enqueued_at = utcnow()
            current.worker_id, current.eta_seconds, current.start_iteration = None, None, None
            # The next attempt continues from the checkpoint: progress says so.
            current.iteration = current.checkpoint_iteration or 0
            if current.kind.animated:
                # It remakes the frames after its checkpoint's (their files are overwritten).
                current.frames_done = min(current.frames_done, current.checkpoint_frame or 0)
                current.frame, current.start_frame = current.frames_done, None
            return status_events(current)

        job = self.store.update(job_id, mutate)
        if job is None or job.attempt == attempt:
            return job
        # Publish the new attempt first: a late worker of the old one then stops by itself.
        enqueue_job(self.queue, self.store, job)
        if job.kind.animated:
            clear_frame_keys(self.queue, job_id, attempt, job.frames_done)
        logger.info("job %s requeued as attempt %s", job_id, job.attempt)
        try:
            self.queue.delete(Keys.inputs(job_id, attempt))  # the new attempt has its own copy
        except Exception:
            logger.warning("job %s: inputs of attempt %s not removed", job_id, attempt)
        return job

    # Recovery and audit

    def recover(self) -> None:
        """At startup: fix files, apply pending reports, requeue orphaned and lost jobs."""
        self.store.recover()
        try:
            self._recover_queue()
        except Exception as exc:
            # Queue down at startup: the polling loop, reaper and audit catch up once it is back.
            self.queue_error = f"{type(exc).__name__}: {exc}"
            logger.error("recovery could not reach the queue: %s", self.queue_error)

    def _recover_queue(self) -> None:
        # Only an embedded worker (SQLite queue, worker in the API process) surely died with us;
        # jobs of separate worker processes are left to the lease reaper.
        embedded = self.queue.embedded and self.settings.worker
        self.poll()
        with self._lock:
            queued = self.queue.queued_attempts()
            for job in self.store.active():
                claimed = self.queue.peek(Keys.claim(job.id, job.attempt)) is not None
                if embedded and (job.status == JobStatus.running or claimed):
                    # The embedded worker died with the previous process.
                    self.lost(job.id, job.attempt)
                elif (
                    job.status == JobStatus.queued
                    and not claimed
                    and ((job.id, job.attempt) not in queued)
                ):
                    self._enqueue_again(job)

    def _audit(self, grace: float, now: float | None = None) -> None:
        """Re-enqueue queued jobs whose task vanished (e.g. Redis lost its data), repeat cancel
        flags of running jobs (one may have been lost while the queue was down), and settle the
        queue cleanups that ended and deleted jobs owe (the store records them)."""
        cutoff = time.time() - grace
        active = self.store.active()
        for job in active:
            if job.status == JobStatus.running and job.cancel_requested:
                self.queue.set_control(job.id, job.attempt, cancel=True)
        candidates = [
            job
            for job in active
            if job.status == JobStatus.queued and job.enqueued_at.timestamp() < cutoff
        ]
        cleanups = self.store.queue_cleanups()
        if not candidates and not cleanups:
            return
        # Task messages hold ids and params only (input bytes sit under their own keys).
        queued = self.queue.queued_attempts()
        for job in candidates:
            if (job.id, job.attempt) in queued:
                continue
            if self.queue.peek(Keys.claim(job.id, job.attempt)) is None:
                self._enqueue_again(job)
        if cleanups:
            now = time.time() if now is None else now
            self._settle(cleanups, {job_id for job_id, _ in queued}, now, grace)

    def _settle(
        self, cleanups: list[QueueCleanup], queued: set[str], now: float, grace: float
    ) -> None:
        """For each ended job: while a task of it waits or a worker still runs its attempt, send
        the stop signal again; once neither, and `grace` after the end, clear every key."""
        signs = self.queue.peek_many(
            Keys.attempt_key(kind, cleanup.job_id, cleanup.attempt)
            for cleanup in cleanups
            for kind in ("claim", "heartbeat", "progress")
        )
        for cleanup in cleanups:
            job_id, attempt = cleanup.job_id, cleanup.attempt
            if job_id in queued or self._still_running(cleanup, signs, now):
                self.queue.set_control(job_id, attempt, cancel=True, deleted=cleanup.deleted)
            elif now - cleanup.since >= grace:
                self.queue.clear_job(job_id, attempt)
                self.store.cleanup_done(cleanup)
                self._ended_signs.pop(job_id, None)
        for job_id in set(self._ended_signs) - {cleanup.job_id for cleanup in cleanups}:
            del self._ended_signs[job_id]

    def _still_running(self, cleanup: QueueCleanup, signs: dict[str, Any], now: float) -> bool:
        """Whether a worker may still run the ended job's attempt: it shows signs of life that
        changed within a lease (our clock) and has not reported its result."""
        values = [
            signs.get(Keys.attempt_key(kind, cleanup.job_id, cleanup.attempt))
            for kind in ("claim", "heartbeat", "progress")
        ]
        stamps = [value["time"] for value in values if isinstance(value, dict) and "time" in value]
        if not stamps:
            return False
        if self.queue.peek(Keys.result(cleanup.job_id, cleanup.attempt)) is not None:
            return False
        sign = max(stamps)
        seen = self._ended_signs.get(cleanup.job_id)
        if seen is None or seen[0] != sign:
            seen = self._ended_signs[cleanup.job_id] = (sign, now)
        return now - seen[1] <= self.settings.lease_seconds

    def _enqueue_again(self, job: Job) -> None:
        logger.warning("job %s attempt %s was not in the queue: enqueued", job.id, job.attempt)
        enqueue_job(self.queue, self.store, job)
