"""control.py: control records say stop, and a setup stopped early reports the right Result."""

from __future__ import annotations

from typing import Any

from artgen.jobs.control import SetupStop, StopReason, control_reason, stop_reasons
from artgen.jobs.queue import Keys
from artgen.jobs.reports import Outcome


class FakeQueue:
    """The two reads control.py makes, from a dict of control records."""

    def __init__(self, controls: dict[str, Any]) -> None:
        self.controls = controls

    def control(self, job_id: str) -> Any:
        return self.controls.get(job_id)

    def peek_many(self, keys: Any) -> dict[str, Any]:
        by_key = {Keys.control(job_id): value for job_id, value in self.controls.items()}
        return {key: by_key[key] for key in keys if key in by_key}


def test_control_reason() -> None:
    assert control_reason({"attempt": 2}, 2) is None
    assert control_reason({"attempt": 2, "cancel": True}, 2) == StopReason.canceled
    assert control_reason({"attempt": 3}, 2) == StopReason.superseded
    assert control_reason(None, 2) is None  # an unreadable record never stops a job


def test_stop_reasons_read_every_control_record_once() -> None:
    queue = FakeQueue({"a": {"attempt": 1}, "b": {"attempt": 1, "cancel": True}, "c": {}})
    running = [("a", 1, float("inf")), ("b", 1, float("inf")), ("c", 1, float("inf"))]
    running.append(("d", 1, 0.0))  # past its deadline
    stops = stop_reasons(queue, running)  # type: ignore[arg-type]
    assert stops == {
        ("b", 1): StopReason.canceled,
        ("c", 1): StopReason.superseded,
        ("d", 1): StopReason.timeout,
    }


def test_a_setup_stopped_early_reports_its_result() -> None:
    queue = FakeQueue({"job": {"attempt": 1, "cancel": True}})
    stop = SetupStop(queue, "job", 1, 60.0, lambda: False)  # type: ignore[arg-type]
    assert stop() and stop.reason == StopReason.canceled
    result = stop.result()
    assert result is not None and result.outcome == Outcome.canceled and result.attempt == 1
    shutdown = SetupStop(queue, "job", 1, 60.0, lambda: True)  # type: ignore[arg-type]
    assert shutdown() and shutdown.result() is not None
    assert shutdown.result().outcome == Outcome.interrupted  # type: ignore[union-attr]
    superseded = SetupStop(FakeQueue({"job": {"attempt": 2}}), "job", 1, 60.0, lambda: False)  # type: ignore[arg-type]
    assert superseded() and superseded.result() is None  # another attempt owns the job
    timed_out = SetupStop(FakeQueue({}), "job", 1, -1.0, lambda: False)  # type: ignore[arg-type]
    assert timed_out()
    failed = timed_out.result()
    assert failed is not None and failed.error is not None and failed.error.code == "timeout"
