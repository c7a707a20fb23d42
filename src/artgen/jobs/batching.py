"""Which queued jobs may join a running batch: same models and size, within the budgets.

BatchScheduler looks at the queue at most every BATCH_SCAN_INTERVAL_S (and an unchanged queue
only every BATCH_RESCAN_S), and holds the batch limits: `batch_jobs` (lowered for good after the
GPU runs out of memory) and a pause after a batched step failed. The worker claims and starts
the tasks it offers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from artgen.config import Settings
from artgen.engine.generate import rounded_size
from artgen.jobs.model_cache import models_key
from artgen.jobs.queue import JobQueue, QueuedTask
from artgen.jobs.schemas import JobCreate

# While a batch has room, the queue is looked at (a count of its tasks) this often ...
BATCH_SCAN_INTERVAL_S = 0.1
# ... looking at this many waiting tasks (a scan reads their payloads, init images included) ...
BATCH_SCAN_LIMIT = 32
# ... and an unchanged queue (same number of tasks) again only after this long.
BATCH_RESCAN_S = 5.0
# After a batched step failed (not out of memory), the worker batches nothing for this long.
BATCH_PAUSE_AFTER_ERROR_S = 60.0
# Jobs stepped together when settings.batch_jobs is unset: on CUDA batching pays; on a CPU it
# only delays the first job.
DEFAULT_CUDA_BATCH_JOBS = 8


class BatchMember(Protocol):
    """What the scheduler reads of a running attempt (a JobRun)."""

    @property
    def job_id(self) -> str: ...
    @property
    def request(self) -> JobCreate: ...
    @property
    def pixels(self) -> int: ...
    @property
    def size(self) -> tuple[int, int]: ...
    @property
    def vqgan_factor(self) -> int: ...


class BatchScheduler:
    """Offers the queued tasks that can step with a running batch."""

    def __init__(self, settings: Settings, queue: JobQueue, device_type: str) -> None:
        self.settings = settings
        self.queue = queue
        # Jobs stepped together at most; lowered for good after the GPU runs out of memory.
        self.batch_jobs = settings.batch_jobs or (
            DEFAULT_CUDA_BATCH_JOBS if device_type == "cuda" else 1
        )
        # After a batched step failed for no known job, jobs run alone until this time.
        self._paused_until = 0.0
        # ((tasks queued, the batch's jobs), time) at the last look for jobs to batch.
        self._last_scan: tuple[tuple[int, tuple[str, ...]], float] = ((0, ()), 0.0)
        self._next_scan = 0.0

    def has_room(self, members: Sequence[BatchMember]) -> bool:
        """Whether one more job may join."""
        return len(members) < self.batch_jobs

    def waiting(self, members: Sequence[BatchMember]) -> list[QueuedTask]:
        """Queued tasks worth offering to the batch now, in queue order ([] most of the time)."""
        now = time.monotonic()
        if not members or now < self._next_scan:
            return []
        self._next_scan = now + BATCH_SCAN_INTERVAL_S
        if not self.has_room(members) or now < self._paused_until:
            return []
        if members[0].request.kind.animated:
            return []  # an animation steps alone
        try:
            pending = self.queue.pending_count()
            seen = (pending, tuple(member.job_id for member in members))
            if pending == 0 or (
                seen == self._last_scan[0] and now - self._last_scan[1] < BATCH_RESCAN_S
            ):
                return []  # nothing queued, or neither the queue nor the batch changed since
            self._last_scan = (seen, now)
            return self.queue.queued_tasks(BATCH_SCAN_LIMIT)
        except Exception:
            return []  # the queue is unreachable: the batch goes on as it is

    def fits(self, task: QueuedTask, members: Sequence[BatchMember]) -> bool:
        """Same models and output size as the batch, and within its pixel budget."""
        first = members[0]
        try:
            request = JobCreate.model_validate(task.payload["params"])
            size = rounded_size(request.width, request.height, first.vqgan_factor)
        except Exception:
            return False  # it fails on its own when a worker takes it
        if request.kind.animated or first.request.kind.animated:
            return False  # animations step alone
        if models_key(self.settings, request) != models_key(self.settings, first.request):
            return False
        if size != first.size:
            return False
        pixels = sum(member.pixels for member in members) + size[0] * size[1]
        return pixels <= self.settings.batch_pixels

    def limit(self, jobs: int) -> int:
        """Batch at most `jobs` jobs from now on (after the GPU ran out of memory)."""
        self.batch_jobs = max(1, min(self.batch_jobs, jobs))
        return self.batch_jobs

    def pause(self) -> None:
        """Batch nothing for BATCH_PAUSE_AFTER_ERROR_S (a batched step failed)."""
        self._paused_until = time.monotonic() + BATCH_PAUSE_AFTER_ERROR_S
