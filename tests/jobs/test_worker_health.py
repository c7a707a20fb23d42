"""artgen.jobs.worker_health: liveness on our clock, long-gone workers dropped."""

from __future__ import annotations

from artgen.jobs.worker_health import FORGET_WORKERS_AFTER_S, WorkerClocks


def _registration(name: str, heartbeat: float, **fields: object) -> dict[str, object]:
    return {"id": name, "device": "cpu", "heartbeat": heartbeat, **fields}


def test_a_worker_whose_clock_is_behind_stays_alive_while_it_beats() -> None:
    clocks = WorkerClocks()
    now = 10_000.0
    first = clocks.listed([_registration("behind", now - 1000)], now, lease_seconds=5)
    assert [worker.alive for worker in first] == [False]  # first look: only the stamp
    again = clocks.listed([_registration("behind", now - 999)], now + 1, lease_seconds=5)
    assert [worker.alive for worker in again] == [True]
    silent = clocks.listed([_registration("behind", now - 999)], now + 10, lease_seconds=5)
    assert [worker.alive for worker in silent] == [False]


def test_stopped_and_long_gone_workers() -> None:
    clocks = WorkerClocks()
    now = 10_000.0
    workers = clocks.listed(
        [
            _registration("stopped", now, stopped=True),
            _registration("gone", now - 2 * FORGET_WORKERS_AFTER_S),
        ],
        now,
        lease_seconds=5,
    )
    assert [(worker.id, worker.alive) for worker in workers] == [("stopped", False)]
