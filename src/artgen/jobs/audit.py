"""The queue audit: what the queue should hold for the store's jobs, put right.

Every `grace` seconds (and at startup) QueueAudit re-enqueues queued jobs whose task vanished
(Redis lost its data, say), repeats the cancel flags of running jobs (one may have been lost
while the queue was down), and settles the queue cleanups that ended and deleted jobs owe (the
store records them).
"""

from __future__ import annotations

import time
from typing import Any

from artgen.config import Settings
from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.reports import decode_sign
from artgen.jobs.schemas import JobStatus
from artgen.jobs.store import JobStore, QueueCleanup
from artgen.jobs.transitions import JobTransitions

SIGN_KINDS = ("claim", "heartbeat", "progress")


class QueueAudit:
    """Re-enqueues vanished tasks, repeats cancel flags, settles ended jobs' queue keys."""

    def __init__(
        self, settings: Settings, store: JobStore, queue: JobQueue, transitions: JobTransitions
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.transitions = transitions
        # Ended jobs still owing a queue cleanup -> (a worker's latest sign, our time when it
        # changed): a worker still running such an attempt is told to stop until it is silent.
        self._ended_signs: dict[str, tuple[float, float]] = {}

    def run(self, grace: float, now: float | None = None) -> None:
        """One audit; a fresh enqueue or end is left alone for `grace` seconds."""
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
                self.transitions.enqueue_again(job)
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
            for kind in SIGN_KINDS
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
        found = [
            decode_sign(signs.get(Keys.attempt_key(kind, cleanup.job_id, cleanup.attempt)))
            for kind in SIGN_KINDS
        ]
        stamps = [sign.time for sign in found if sign is not None]
        if not stamps:
            return False
        if self.queue.peek(Keys.result(cleanup.job_id, cleanup.attempt)) is not None:
            return False
        sign = max(stamps)
        seen = self._ended_signs.get(cleanup.job_id)
        if seen is None or seen[0] != sign:
            seen = self._ended_signs[cleanup.job_id] = (sign, now)
        return now - seen[1] <= self.settings.lease_seconds
