"""ReportCollector (API side): worker reports -> job records, files and events.

Every POLL_INTERVAL_S it reads the reports of every active job's attempt in one round trip,
decodes them (jobs/reports.py) and applies each by its type: Progress and signs of life to the
record, Preview and Checkpoint to files, Result to a terminal state or a requeue. The parts it
holds, none of which calls back into it: LeaseReaper (when an attempt is lost or timed out),
JobTransitions (the state machine: finish, requeue), QueueAudit (what the queue should hold).

An animation's MP4 is encoded from its frames when it ends; that runs on the collector's own
video thread, so polling never waits for ffmpeg (the job stays active until its video is in).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from artgen.config import Settings
from artgen.jobs.audit import QueueAudit
from artgen.jobs.events import Events, progress_event, status_events
from artgen.jobs.frames import collect_frames, frames_on_disk
from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.reaper import LeaseReaper, Verdict
from artgen.jobs.reports import (
    Outcome,
    Progress,
    Result,
    Sign,
    decode_checkpoint,
    decode_preview,
    decode_progress,
    decode_result,
    decode_sign,
)
from artgen.jobs.schemas import Job, JobError, JobStatus, utcnow
from artgen.jobs.store import CHECKPOINT, FINAL, PREVIEW, VIDEO, JobStore
from artgen.jobs.transitions import JobTransitions

logger = logging.getLogger("artgen.jobs.collector")

POLL_INTERVAL_S = 0.2

OUTCOME_STATUS = {
    Outcome.succeeded: JobStatus.succeeded,
    Outcome.failed: JobStatus.failed,
    Outcome.canceled: JobStatus.canceled,
}


class ReportCollector:
    """Polls the queue storage for active jobs and applies what workers reported."""

    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.reaper = LeaseReaper(settings)
        self.transitions = JobTransitions(settings, store, queue)
        self.queue_audit = QueueAudit(settings, store, queue, self.transitions)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Encodes ending animations' MP4s off the polling thread (while the thread runs).
        self._videos: ThreadPoolExecutor | None = None
        self._finishing: set[str] = set()  # jobs whose MP4 is being encoded
        self._last_audit = 0.0
        self._lock = threading.Lock()
        # Last error talking to the queue (None when the last poll worked).
        self.queue_error: str | None = None

    # Thread

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._stop.clear()
        self._videos = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artgen-video")
        self._thread = threading.Thread(target=self._loop, name="artgen-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, after the videos being encoded and one last pass (nothing reported is
        left behind)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._videos is not None:
            self._videos.shutdown(wait=True)
            self._videos = None
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
            jobs = [job for job in self.store.active() if job.id not in self._finishing]
            if jobs:
                keys = [
                    Keys.attempt_key(kind, job.id, job.attempt)
                    for job in jobs
                    for kind in Keys.ATTEMPT_KINDS
                ]
                reports = self.queue.peek_many(keys)
                for job in jobs:
                    self._apply(job, reports, time.time() if now is None else now)
            self.reaper.keep_only((job.id, job.attempt) for job in jobs)
            self.queue_error = None
            if time.monotonic() - self._last_audit >= self.grace:
                self._last_audit = time.monotonic()
                self.queue_audit.run(grace=self.grace)

    @property
    def grace(self) -> float:
        """How often the audit runs, and how long a fresh enqueue or end is left alone."""
        return max(self.settings.lease_seconds, 1.0)

    def audit(self, now: float | None = None, grace: float | None = None) -> None:
        """Run the audit now (it also runs every `grace` seconds from poll)."""
        with self._lock:
            self._last_audit = time.monotonic()
            self.queue_audit.run(grace=self.grace if grace is None else grace, now=now)

    def _apply(self, job: Job, reports: dict[str, Any], now: float) -> None:
        def stored(kind: str) -> Any:
            return reports.get(Keys.attempt_key(kind, job.id, job.attempt))

        if job.kind.animated:
            # Before the checkpoint and the result: each counts only frames already sent.
            job = collect_frames(self.queue, self.store, job)
        claim, heartbeat = decode_sign(stored("claim")), decode_sign(stored("heartbeat"))
        progress = decode_progress(stored("progress"), job.attempt)
        if progress is not None or heartbeat is not None:
            self._apply_progress(job, progress, heartbeat)
        if stored("preview") is not None:
            self._apply_preview(job)
        if stored("checkpoint") is not None:
            self._apply_checkpoint(job)
        if stored("result") is not None:
            self._apply_result(job)
            return
        stamps = [sign.time for sign in (claim, heartbeat) if sign is not None]
        if progress is not None and progress.time is not None:
            stamps.append(progress.time)
        key = (job.id, job.attempt)
        verdict = self.reaper.judge(
            key, max(stamps, default=None), job.status == JobStatus.running, now
        )
        if verdict == Verdict.timed_out:
            logger.error("job %s attempt %s: no result within the job timeout", *key)
            limit = self.settings.job_timeout_seconds
            message = f"the generation did not finish within {limit:g} s"
            error = JobError(code="timeout", message=message)
            self.transitions.finish(job.id, job.attempt, JobStatus.failed, error)
        elif verdict == Verdict.lost:
            self.transitions.lost(job.id, job.attempt)

    def _apply_progress(self, job: Job, progress: Progress | None, heartbeat: Sign | None) -> None:
        changed = progress is not None and (
            progress.iteration != job.iteration or progress.loss != job.loss
        )
        if job.status == JobStatus.running and not changed:
            return
        attempt = job.attempt
        worker_id = (progress.worker_id if progress else None) or (
            heartbeat.worker_id if heartbeat else None
        )

        def mutate(current: Job) -> Events | None:
            if current.attempt != attempt or current.status.terminal:
                return None
            events: Events = []
            if current.status == JobStatus.queued:
                current.status = JobStatus.running
                current.started_at = current.started_at or utcnow()
                events += status_events(current)
            current.worker_id = worker_id or current.worker_id
            if progress is not None:
                current.iteration = progress.iteration
                current.loss = progress.loss
                current.eta_seconds = progress.eta_seconds
                current.start_iteration = progress.start_iteration
                if progress.frame is not None:
                    current.frame = progress.frame
                current.frame_iteration = progress.frame_iteration
                current.frame_iterations = progress.frame_iterations
                current.start_frame = progress.start_frame
                if progress.seed is not None:
                    current.seed = progress.seed
                events.append(progress_event(current))
            return events

        self.store.update(job.id, mutate)

    def _apply_preview(self, job: Job) -> None:
        preview = decode_preview(self.queue.pop(Keys.preview(job.id, job.attempt)), job.attempt)
        if preview is None:
            return
        try:
            self.store.write_file(job.id, PREVIEW, preview.png)
        except OSError as exc:
            logger.warning("job %s: preview not saved (%s)", job.id, exc)
            return

        def mutate(current: Job) -> Events | None:
            if current.attempt != job.attempt:
                return None
            current.preview_file, current.preview_iteration = PREVIEW, preview.iteration
            return [("preview", {"iteration": preview.iteration})]  # the API adds its URL

        self._update_written(job.id, mutate)

    def _apply_checkpoint(self, job: Job) -> None:
        stored = self.queue.pop(Keys.checkpoint(job.id, job.attempt))
        checkpoint = decode_checkpoint(stored, job.attempt)
        if checkpoint is None:
            return
        frames = checkpoint.frame
        if frames is not None and not frames_on_disk(self.queue, self.store, job, frames):
            return  # the previous checkpoint stays the one to resume from
        try:
            self.store.write_file(job.id, CHECKPOINT, checkpoint.state)
        except OSError as exc:
            logger.warning("job %s: checkpoint not saved (%s)", job.id, exc)
            return

        def mutate(current: Job) -> None:
            if current.attempt == job.attempt:
                current.checkpoint_file = CHECKPOINT
                current.checkpoint_iteration = checkpoint.iteration
                current.checkpoint_frame = checkpoint.frame

        self._update_written(job.id, mutate)

    def _apply_result(self, job: Job) -> None:
        result = decode_result(self.queue.pop(Keys.result(job.id, job.attempt)), job.attempt)
        if result is None:
            return
        if result.outcome == Outcome.interrupted:
            # The worker shut down cleanly after a checkpoint: requeue without waiting the lease
            # (counted as lost when the worker found the attempt's inputs gone from the queue).
            self.transitions.requeue(job.id, job.attempt, count_as_lost=result.lost)
            return
        status, error = OUTCOME_STATUS[result.outcome], result.error
        files: dict[str, str] = {}
        if result.outcome == Outcome.succeeded:
            status, error, files = self._save_result(job, result)

        def finish() -> None:
            self.transitions.finish(
                job.id,
                job.attempt,
                status,
                error,
                reported=True,
                iteration=result.iteration,
                seed=result.seed,
                files=files,
                animated=job.kind.animated,
            )

        needs_video = job.kind.animated and status in (JobStatus.succeeded, JobStatus.canceled)
        if needs_video and self._videos is not None:
            self._finish_later(job.id, finish)
        else:
            finish()

    def _save_result(
        self, job: Job, result: Result
    ) -> tuple[JobStatus, JobError | None, dict[str, str]]:
        """Write a succeeded result's files: (succeeded, None, their fields), or a failure."""
        files: dict[str, str] = {}
        try:
            if result.png is None:
                raise ValueError("a succeeded result without its image")
            self.store.write_file(job.id, FINAL, result.png)
            files["image_file"] = FINAL
            if result.mp4:
                self.store.write_file(job.id, VIDEO, result.mp4)
                files["video_file"] = VIDEO
        except (OSError, ValueError) as exc:
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            logger.error("job %s: result not saved (%s)", job.id, exc)
            message = "the result could not be saved on the server"
            error = JobError(code="disk_full" if full else "internal_error", message=message)
            return JobStatus.failed, error, {}
        return JobStatus.succeeded, None, files

    def _finish_later(self, job_id: str, finish: Callable[[], None]) -> None:
        """Run `finish` (which encodes the MP4) on the video thread; the job is not polled
        meanwhile."""
        assert self._videos is not None
        self._finishing.add(job_id)

        def run() -> None:
            try:
                finish()
            except Exception:
                logger.error("job %s: not finished", job_id, exc_info=True)
            finally:
                self._finishing.discard(job_id)

        self._videos.submit(run)

    def _update_written(self, job_id: str, mutate: Any) -> None:
        """Record a file just written; if the job was deleted meanwhile, remove what we wrote."""
        if self.store.update(job_id, mutate) is None:
            self.store.remove_dir(job_id)

    # Lost workers and recovery

    def worker_gone(self, worker_id: str) -> None:
        """A worker known to be dead (our own child): requeue its running jobs now."""
        self.poll()  # its last reports first (a checkpoint written just before it died)
        with self._lock:
            for job in self.store.active():
                if job.status == JobStatus.running and job.worker_id == worker_id:
                    self.transitions.lost(job.id, job.attempt)

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
                    self.transitions.lost(job.id, job.attempt)
                elif (
                    job.status == JobStatus.queued
                    and not claimed
                    and ((job.id, job.attempt) not in queued)
                ):
                    self.transitions.enqueue_again(job)
