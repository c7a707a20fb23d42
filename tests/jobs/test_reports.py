"""The typed reports and their one stored form (jobs/reports.py)."""

from __future__ import annotations

import pytest

from artgen.jobs.reports import (
    Checkpoint,
    Frame,
    Outcome,
    Preview,
    Progress,
    Result,
    Sign,
    decode_checkpoint,
    decode_frame,
    decode_preview,
    decode_progress,
    decode_result,
    decode_sign,
    encode,
)
from artgen.jobs.schemas import JobError


def test_every_report_survives_the_queue() -> None:
    progress = Progress(2, 10, "w", 1.5, iterations=20, loss=0.5, seed=7, frame=1, frames=3)
    assert decode_progress(encode(progress), 2) == progress
    preview = Preview(2, 10, b"png")
    assert decode_preview(encode(preview), 2) == preview
    checkpoint = Checkpoint(2, 10, b"state", frame=1)
    assert decode_checkpoint(encode(checkpoint), 2) == checkpoint
    frame = Frame(2, 4, b"png")
    assert decode_frame(encode(frame), 2) == frame
    sign = Sign("w", 3.0)
    assert decode_sign(encode(sign)) == sign
    result = Result(2, Outcome.succeeded, iteration=20, seed=7, png=b"png", mp4=b"mp4")
    assert decode_result(encode(result), 2) == result
    failed = Result.failure(2, "timeout", "too long")
    assert decode_result(encode(failed), 2) == failed
    assert failed.error == JobError(code="timeout", message="too long")
    lost = Result(2, Outcome.interrupted, iteration=0, lost=True)
    assert decode_result(encode(lost), 2) == lost


def test_the_stored_form_is_the_one_workers_always_wrote() -> None:
    """Older workers and queued values keep being read: the dict keys do not change."""
    failed = encode(Result.failure(1, "timeout", "too long"))
    assert failed == {
        "attempt": 1,
        "status": "failed",
        "error": {"code": "timeout", "message": "too long"},
    }
    assert encode(Checkpoint(1, 5, b"s")) == {"attempt": 1, "iteration": 5, "state": b"s"}


@pytest.mark.parametrize(
    "decode",
    [decode_progress, decode_preview, decode_checkpoint, decode_frame, decode_result],
)
def test_another_attempts_value_is_fenced_off(decode: object) -> None:
    value = {"attempt": 1, "iteration": 3, "index": 0, "png": b"p", "state": b"s"}
    value["status"] = "succeeded"
    assert decode(value, 2) is None  # type: ignore[operator]
    assert decode("not a report", 2) is None  # type: ignore[operator]


def test_a_result_that_does_not_parse_fails_with_internal_error() -> None:
    unknown = decode_result({"attempt": 1, "status": "exploded"}, 1)
    assert unknown is not None and unknown.outcome == Outcome.failed
    assert unknown.error is not None and unknown.error.code == "internal_error"
    assert "exploded" in unknown.error.message
    bare = decode_result({"attempt": 1, "status": "failed", "error": {}}, 1)
    assert bare is not None and bare.error is not None and bare.error.code == "internal_error"


def test_progress_without_an_attempt_is_the_keys_own() -> None:
    progress = decode_progress({"iteration": 4, "loss": 0.1, "time": 0}, 3)
    assert progress == Progress(3, 4, time=0, loss=0.1)
    assert decode_progress({"attempt": 3}, 3) is None  # no iteration: not a progress report
