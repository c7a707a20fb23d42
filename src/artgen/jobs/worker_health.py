"""Which registered workers are alive, judged on our clock (hosts' clocks may disagree)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from artgen.jobs.schemas import WorkerInfo

# A worker silent this long is no longer listed in the health (it stays visible for a while after
# a crash, so an operator sees it).
FORGET_WORKERS_AFTER_S = 3600.0


class WorkerClocks:
    """Each worker's last heartbeat stamp and how far its clock is behind ours."""

    def __init__(self) -> None:
        # worker id -> (its last heartbeat stamp, how far its clock is behind ours or None):
        # liveness is judged on our clock once the offset is known.
        self._clocks: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def listed(
        self, registrations: Iterable[dict[str, Any]], now: float, lease_seconds: float
    ) -> list[WorkerInfo]:
        """The workers to show, each alive when heard from within `lease_seconds`; long-gone
        ones are dropped (and forgotten here)."""
        workers = []
        for data in registrations:
            worker = WorkerInfo.model_validate(data)
            silence = self._silence(worker, now)
            worker.alive = silence <= lease_seconds and not worker.stopped
            # Workers gone long ago (replaced, scaled down) drop out of the list.
            if worker.alive or silence <= FORGET_WORKERS_AFTER_S:
                workers.append(worker)
        with self._lock:
            listed = {worker.id for worker in workers}
            for worker_id in [key for key in self._clocks if key not in listed]:
                del self._clocks[worker_id]
        return workers

    def _silence(self, worker: WorkerInfo, now: float) -> float:
        """Seconds since its last heartbeat, read on our clock once its clock offset is known."""
        with self._lock:
            stamp, offset = self._clocks.get(worker.id, (None, None))
            if stamp is not None and worker.heartbeat != stamp:
                # A fresh heartbeat was written since our last look: the smallest gap between it
                # and our clock estimates the offset (a dead worker's last gap is only larger).
                gap = now - worker.heartbeat
                offset = gap if offset is None else min(offset, gap)
            self._clocks[worker.id] = (worker.heartbeat, offset)
        return now - (worker.heartbeat + (offset or 0.0))
