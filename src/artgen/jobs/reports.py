"""What a worker reports about one attempt of a job, typed, and its form in the queue.

A worker writes each report under its attempt's key (queue.Keys); the collector reads them back.
The reports are small frozen dataclasses; `encode` turns one into the dict the queue stores and
`decode` turns a stored value back into its report. These two functions are the only place that
knows the stored form: no other module reads or writes report dicts.

Decoding is lenient about optional fields (a report from an older worker, or a test's fake one)
and strict about ownership: a value of another attempt, or one that is not a report of the kind
its key says, decodes to None and is ignored (fencing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from artgen.jobs.schemas import JobError


class Outcome(StrEnum):
    """How an attempt ended."""

    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"
    interrupted = "interrupted"  # handed back: the job is requeued and resumes from a checkpoint


@dataclass(frozen=True)
class Sign:
    """A worker's sign of life for an attempt: its claim, and each heartbeat after it."""

    worker_id: str
    time: float  # the worker host's clock (time.time())


@dataclass(frozen=True)
class Progress:
    """Where the attempt is: iteration, loss, ETA (an animation adds its frame)."""

    attempt: int
    iteration: int
    worker_id: str | None = None
    time: float | None = None
    iterations: int | None = None
    loss: float | None = None
    eta_seconds: float | None = None
    seed: int | None = None
    start_iteration: int | None = None  # where this attempt started (resumed from a checkpoint)
    frame: int | None = None
    frames: int | None = None
    frame_iteration: int | None = None
    frame_iterations: int | None = None
    start_frame: int | None = None


@dataclass(frozen=True)
class Preview:
    """The latest preview image (PNG) and the iteration it shows."""

    attempt: int
    iteration: int
    png: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A job's resume state: a later attempt continues from it (not model weights)."""

    attempt: int
    iteration: int
    state: bytes  # torch.save of the generation's state_dict
    frame: int | None = None  # an animation: the frames finished at this point


@dataclass(frozen=True)
class Frame:
    """One finished frame of an animation (PNG)."""

    attempt: int
    index: int
    png: bytes


@dataclass(frozen=True)
class Result:
    """How the attempt ended, with what it made.

    succeeded: png (and mp4 for a timelapse); failed: error; canceled / interrupted: the iteration
    reached. `lost` marks an interrupted attempt whose inputs were gone from the queue."""

    attempt: int
    outcome: Outcome
    iteration: int | None = None
    seed: int | None = None
    png: bytes | None = None
    mp4: bytes | None = None
    error: JobError | None = None
    lost: bool = False

    @classmethod
    def failure(cls, attempt: int, code: str, message: str) -> Result:
        """A failed attempt's result."""
        return cls(attempt, Outcome.failed, error=JobError(code=code, message=message))


Report = Sign | Progress | Preview | Checkpoint | Frame | Result


def encode(report: Report) -> dict[str, Any]:
    """The dict the queue stores for `report` (None fields left out)."""
    if isinstance(report, Result):
        value: dict[str, Any] = {"attempt": report.attempt, "status": report.outcome.value}
        for name in ("iteration", "seed", "png", "mp4"):
            if getattr(report, name) is not None:
                value[name] = getattr(report, name)
        if report.error is not None:
            value["error"] = report.error.model_dump()
        if report.lost:
            value["lost"] = True
        return value
    return {name: item for name, item in vars(report).items() if item is not None}


def decode_sign(value: Any) -> Sign | None:
    """A claim or heartbeat; None when `value` is not one."""
    if not isinstance(value, dict) or "time" not in value:
        return None
    try:
        return Sign(worker_id=str(value.get("worker_id", "")), time=float(value["time"]))
    except (TypeError, ValueError):
        return None


def decode_progress(value: Any, attempt: int) -> Progress | None:
    """The attempt's progress; None for another attempt's or a malformed value."""
    fields = _owned(value, attempt)
    if fields is None or "iteration" not in fields:
        return None
    known = set(Progress.__dataclass_fields__) - {"attempt"}
    try:
        return Progress(attempt=attempt, **{k: v for k, v in fields.items() if k in known})
    except TypeError:
        return None


def decode_preview(value: Any, attempt: int) -> Preview | None:
    """The attempt's preview; None for another attempt's or a malformed value."""
    fields = _owned(value, attempt, required=True)
    if fields is None or not isinstance(fields.get("png"), bytes):
        return None
    return Preview(attempt, int(fields.get("iteration") or 0), fields["png"])


def decode_checkpoint(value: Any, attempt: int) -> Checkpoint | None:
    """The attempt's resume state; None for another attempt's or a malformed value."""
    fields = _owned(value, attempt, required=True)
    if fields is None or not isinstance(fields.get("state"), bytes):
        return None
    frame = fields.get("frame")
    return Checkpoint(
        attempt, int(fields["iteration"]), fields["state"], None if frame is None else int(frame)
    )


def decode_frame(value: Any, attempt: int) -> Frame | None:
    """One finished frame of the attempt; None for another attempt's or a malformed value."""
    fields = _owned(value, attempt, required=True)
    if fields is None or not isinstance(fields.get("png"), bytes):
        return None
    return Frame(attempt, int(fields.get("index") or 0), fields["png"])


def decode_result(value: Any, attempt: int) -> Result | None:
    """The attempt's result; None for another attempt's value.

    An unknown status, or a failure without a readable error, is a failed result with
    `internal_error`: the job ends instead of waiting for a result that never parses."""
    fields = _owned(value, attempt, required=True)
    if fields is None:
        return None
    status = fields.get("status")
    try:
        outcome = Outcome(str(status))
    except ValueError:
        return Result.failure(attempt, "internal_error", f"unknown result status {status!r}")
    error: JobError | None = None
    if outcome == Outcome.failed:
        raw = fields.get("error")
        try:
            error = JobError.model_validate(raw)
        except ValueError:
            error = JobError(code="internal_error", message="the worker reported no error")
    iteration, seed = fields.get("iteration"), fields.get("seed")
    return Result(
        attempt=attempt,
        outcome=outcome,
        iteration=None if iteration is None else int(iteration),
        seed=None if seed is None else int(seed),
        png=fields.get("png"),
        mp4=fields.get("mp4") or None,
        error=error,
        lost=bool(fields.get("lost")),
    )


def _owned(value: Any, attempt: int, *, required: bool = False) -> dict[str, Any] | None:
    """`value` as a dict when it belongs to `attempt`; a value without an attempt is taken as
    this attempt's unless `required` (progress: any value under the key)."""
    if not isinstance(value, dict):
        return None
    if value.get("attempt", None if required else attempt) != attempt:
        return None
    return value
