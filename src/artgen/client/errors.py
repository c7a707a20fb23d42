"""What the client raises: the server's JSON errors as exceptions, job and connection errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from artgen.api.schemas import JobPublic


class ArtgenError(Exception):
    """Base of every error the client raises."""


class ArtgenConnectionError(ArtgenError):
    """The server could not be reached, or the connection broke and retries ran out."""


@dataclass(frozen=True)
class FieldError:
    """One invalid field and why (the server's `details` entries)."""

    field: str
    message: str


class ApiError(ArtgenError):
    """An error answer: {"error": {"code", "message", "field"?, "details"}} and its HTTP status."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: list[FieldError] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.details = details or []
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400, 413, 415 and other refusals of the request as sent."""


class Conflict(ApiError):
    """409: not finished yet (`not_finished`), or an Idempotency-Key reused with another body."""


class Unauthorized(ApiError):
    """401/403: no or an invalid API key."""


class NotFound(ApiError):
    """404: no such job (or another key's job), or nothing there yet."""


class ValidationFailed(ApiError):
    """422: a field is invalid; `field` names it, `details` lists every problem."""


class RateLimited(ApiError):
    """429: too many submissions or active jobs; `retry_after` seconds."""


class Unavailable(ApiError):
    """503 (queue full, shutting down), 507 (disk full) and other 5xx answers."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: RateLimited,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or a date."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def api_error(status_code: int, body: bytes, retry_after: str | None = None) -> ApiError:
    """The exception for an error answer; a body not in our shape still gives a clear message."""
    error: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
    except (ValueError, UnicodeDecodeError):
        pass
    code = str(error.get("code") or f"http_{status_code}")
    message = str(error.get("message") or body[:200].decode("utf-8", "replace").strip())
    details = [
        FieldError(str(item.get("field", "")), str(item.get("message", "")))
        for item in error.get("details") or []
        if isinstance(item, dict)
    ]
    kind = _BY_STATUS.get(status_code, Unavailable if status_code >= 500 else BadRequest)
    return kind(
        status_code,
        code,
        message or f"HTTP {status_code}",
        field=error.get("field"),
        details=details,
        retry_after=parse_retry_after(retry_after),
    )


def local_validation_error(error: ValidationError) -> ValidationFailed:
    """The 422 the server would answer, raised before sending: JobCreate refused the fields."""
    details = []
    for item in error.errors():
        name = ".".join(str(part) for part in item.get("loc", ())) or "body"
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        details.append(FieldError(name, message))
    first = details[0] if details else FieldError("body", "invalid")
    return ValidationFailed(
        422,
        "validation_error",
        f"{first.field}: {first.message}",
        field=first.field,
        details=details,
    )


class JobFailed(ArtgenError):
    """A job ended without an image: failed (with the server's error) or canceled."""

    def __init__(self, job: JobPublic) -> None:
        text = f"job {job.id} {job.status.value}"
        if job.error is not None:
            text += f": {job.error.code}: {job.error.message}"
        super().__init__(text)
        self.job = job
