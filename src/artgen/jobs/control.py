"""What tells a running attempt to stop: the job's control record, its deadline, a shutdown.

The API side publishes one control record per job (Keys.control: the attempt that owns the job,
and `cancel`); a worker reads it before claiming an attempt and every CONTROL_INTERVAL_S while
running it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.reports import Outcome, Result

logger = logging.getLogger("artgen.jobs.worker")

# Cancel flags, superseding attempts and deadlines are looked at this often (not every step: on
# a GPU a step takes milliseconds, a queue round trip a good part of one).
CONTROL_INTERVAL_S = 0.05


class StopReason(StrEnum):
    """Why an attempt stops before its last iteration."""

    shutdown = "shutdown"  # the worker stops: the job is handed back
    canceled = "canceled"
    superseded = "superseded"  # another attempt owns the job: nothing is reported
    timeout = "timeout"


def timeout_result(attempt: int, timeout_seconds: float) -> Result:
    """The result of an attempt that ran past the job timeout."""
    message = f"the job ran longer than {timeout_seconds:g} seconds"
    return Result.failure(attempt, "timeout", message)


def control_reason(control: Any, attempt: int) -> StopReason | None:
    """canceled or superseded, as the control record says; None when the attempt may go on."""
    if isinstance(control, dict) and control.get("cancel"):
        return StopReason.canceled
    if isinstance(control, dict) and control.get("attempt") != attempt:
        return StopReason.superseded
    return None


def claimable(queue: JobQueue, job_id: str, attempt: int, *, joining: bool = False) -> bool:
    """False when the attempt was canceled, superseded, or its job is no longer active."""
    control = queue.control(job_id)
    if control is None:
        # Every enqueue publishes the control record first, and it is removed when the job
        # ends: a message without one is a stale copy of a finished or deleted job's task.
        if not joining:
            logger.info("job %s attempt %s skipped (the job is no longer active)", job_id, attempt)
        return False
    if control_reason(control, attempt) is not None:
        if not joining:
            logger.info("job %s attempt %s skipped (canceled or superseded)", job_id, attempt)
            if control.get("deleted"):
                queue.delete(Keys.control(job_id))  # its last trace in the queue
        return False
    return True


def stop_reasons(
    queue: JobQueue, attempts: Iterable[tuple[str, int, float]]
) -> dict[tuple[str, int], StopReason]:
    """The running (job_id, attempt, deadline)s that must stop now, and why."""
    attempts = list(attempts)
    try:
        controls = queue.peek_many(Keys.control(job_id) for job_id, _, _ in attempts)
    except Exception:
        controls = {}  # an unreachable queue must not stop the jobs
    now = time.monotonic()
    stops: dict[tuple[str, int], StopReason] = {}
    for job_id, attempt, deadline in attempts:
        reason = control_reason(controls.get(Keys.control(job_id)), attempt)
        if reason is None and now > deadline:
            reason = StopReason.timeout
        if reason is not None:
            stops[(job_id, attempt)] = reason
    return stops


class SetupStop:
    """`should_stop` for a job's setup: the worker stopping, the job's deadline, or its control
    record saying cancel or another attempt (read at most every CONTROL_INTERVAL_S)."""

    def __init__(
        self,
        queue: JobQueue,
        job_id: str,
        attempt: int,
        timeout_seconds: float,
        stopping: Callable[[], bool],
    ) -> None:
        self.queue, self.job_id, self.attempt = queue, job_id, attempt
        self.timeout_seconds = timeout_seconds
        self.deadline = time.monotonic() + timeout_seconds
        self.stopping = stopping
        self.reason: StopReason | None = None
        self._next_look = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.stopping():
            self.reason = StopReason.shutdown
        elif now > self.deadline:
            self.reason = StopReason.timeout
        elif now >= self._next_look:
            self._next_look = now + CONTROL_INTERVAL_S
            try:
                control = self.queue.control(self.job_id)
            except Exception:
                control = None  # an unreachable queue must not stop the job
            self.reason = control_reason(control, self.attempt)
        return self.reason is not None

    def result(self) -> Result | None:
        """What the attempt reports (nothing when superseded); the store keeps its checkpoint."""
        if self.reason == StopReason.canceled:
            return Result(self.attempt, Outcome.canceled)
        if self.reason == StopReason.timeout:
            return timeout_result(self.attempt, self.timeout_seconds)
        if self.reason == StopReason.shutdown:
            return Result(self.attempt, Outcome.interrupted)
        return None
