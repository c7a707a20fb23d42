"""A worker's presence in the queue: its registration, heartbeats and lossy report writes.

WorkerPresence holds the worker's registration slot and WorkerInfo, the attempts it runs, and a
heartbeat thread that stamps each of them (Keys.heartbeat) and the registration (Keys.worker).
It knows nothing of jobs beyond their (job_id, attempt).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.reports import Report, Result, Sign, encode
from artgen.jobs.schemas import WorkerInfo

logger = logging.getLogger("artgen.jobs.worker")

T = TypeVar("T")


class WorkerPresence:
    """Registration, heartbeats and the attempts a worker runs, as the queue sees them."""

    def __init__(self, queue: JobQueue, info: WorkerInfo, heartbeat_interval: float) -> None:
        self.queue = queue
        self.info = info
        self.heartbeat_interval = heartbeat_interval
        self.slot: int | None = None
        # Guards `attempts` so no heartbeat of an attempt is written after its result.
        self._attempts_lock = threading.Lock()
        self.attempts: list[tuple[str, int]] = []  # (job_id, attempt) of every attempt running
        self._publish_lock = threading.Lock()
        # Set once our registration was written: from then on its absence means data loss.
        self._published = False
        self._reports_ok = True
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        """Take a registration slot (retrying while the queue is down), start heart-beating."""
        self.slot = self.retry(self.queue.register_worker)
        self._thread = threading.Thread(
            target=self._heartbeat_loop, name=f"artgen-heartbeat-{self.info.id}", daemon=True
        )
        self._thread.start()

    def sign(self) -> Sign:
        """Our sign of life, stamped now."""
        return Sign(self.info.id, time.time())

    def claim(self, job_id: str, attempt: int) -> bool:
        """Take the attempt (each runs at most once) and start heart-beating for it."""
        if not self.queue.put_if_empty(Keys.claim(job_id, attempt), encode(self.sign())):
            return False
        with self._attempts_lock:
            self.attempts.append((job_id, attempt))
        self._update_busy()
        return True

    def release(self, job_id: str, attempt: int) -> None:
        """Stop heart-beating for the attempt (before its result is reported)."""
        with self._attempts_lock:
            self.attempts.remove((job_id, attempt))
        self._update_busy()

    def end(self, job_id: str, attempt: int, result: Result | None) -> None:
        """Stop heart-beating for the attempt, then report its result (None: superseded)."""
        self.release(job_id, attempt)
        outcome = result.outcome.value if result is not None else "superseded"
        logger.info("job %s attempt %s ended: %s", job_id, attempt, outcome)
        if result is None:
            return
        try:
            # Every step retried: the queue may be down right when the job ends.
            control = self.retry(lambda: self.queue.control(job_id)) or {}
            if control.get("deleted"):
                self.retry(lambda: self.queue.clear_job(job_id, attempt))
                return
            self.retry(lambda: self.queue.put(Keys.result(job_id, attempt), encode(result)))
        except Exception:
            # The lease runs out and the reaper requeues the job from its checkpoint.
            logger.error("job %s: result could not be reported", job_id, exc_info=True)

    def abandon(self) -> None:
        """Stop heart-beating for every attempt (after a crash: they are lost)."""
        with self._attempts_lock:
            self.attempts.clear()

    def stopped(self) -> None:
        """Publish that the worker stopped (the heartbeat thread then ends)."""
        self.info.stopped = True
        self.info.busy = False
        self.publish()

    def _update_busy(self) -> None:
        self.info.job_ids = [job_id for job_id, _ in self.attempts]
        self.info.busy = bool(self.info.job_ids)
        self.info.job_id = self.info.job_ids[0] if self.info.job_ids else None
        self.beat()

    def _heartbeat_loop(self) -> None:
        while not self.info.stopped:
            self.beat()
            time.sleep(self.heartbeat_interval)

    def beat(self) -> None:
        """Stamp every running attempt and the registration."""
        with self._attempts_lock:
            for job_id, attempt in self.attempts:
                self.put(Keys.heartbeat(job_id, attempt), self.sign())
        self.publish()

    def publish(self) -> None:
        """Write the registration (a fresh slot when the queue lost ours)."""
        with self._publish_lock:
            if self.slot is None:
                return
            self.info.heartbeat = time.time()
            try:
                if self._published and not self._owns_slot():
                    # The queue storage lost its data (Redis restarted empty), and maybe another
                    # worker re-registered into our old slot meanwhile: take a fresh one.
                    self.slot = self.queue.register_worker()
            except Exception:
                return  # unreachable; the next heartbeat tries again
            if self.put_value(Keys.worker(self.slot), self.info.model_dump()):
                self._published = True

    def _owns_slot(self) -> bool:
        """Whether our registration is still there, and still ours."""
        assert self.slot is not None
        current = self.queue.peek(Keys.worker(self.slot))
        return isinstance(current, dict) and current.get("id") == self.info.id

    def put(self, key: str, report: Report) -> bool:
        """A lossy report: a failed write is logged (once per outage), the job goes on."""
        return self.put_value(key, encode(report))

    def put_value(self, key: str, value: Any) -> bool:
        """put() of a value that is not a report (the registration)."""
        try:
            self.queue.put(key, value)
        except Exception as exc:
            if self._reports_ok:
                logger.warning("worker %s: reports are being lost (%s)", self.info.id, exc)
            self._reports_ok = False
            return False
        if not self._reports_ok:
            logger.info("worker %s: reports reach the queue again", self.info.id)
        self._reports_ok = True
        return True

    def retry(self, action: Callable[[], T], attempts: int = 30) -> T:
        """Run an action that must reach the queue, backing off while it cannot."""
        delay = 0.1
        for remaining in range(attempts, 0, -1):
            try:
                return action()
            except Exception:
                if remaining == 1:
                    raise
                logger.warning(
                    "worker %s: queue unreachable, retrying", self.info.id, exc_info=True
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")
