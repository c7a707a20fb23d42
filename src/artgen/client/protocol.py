"""What the sync and async clients share: request bodies, answers, retries (no I/O here)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from artgen.client.errors import api_error, local_validation_error, parse_retry_after
from artgen.jobs.schemas import JobCreate

API_KEY_HEADER = "X-API-Key"
DEFAULT_TIMEOUT_S = 30.0
# The server sends a heartbeat every 15 s on a quiet stream; silence longer than this is a drop.
STREAM_READ_TIMEOUT_S = 60.0
RETRY_STATUSES = (429, 503)
TERMINAL_STATUSES = ("succeeded", "failed", "canceled")

# A file to upload (an image, a restyle's video): its bytes, or a path to read.
FileInput = bytes | str | Path


@dataclass(frozen=True)
class RetryPolicy:
    """How 429 and 503 answers are retried: after their Retry-After, a bounded number of times."""

    max_retries: int = 3
    # A server asking for a longer wait than this gets its error raised instead (retry_after set).
    max_wait_s: float = 30.0
    # When a 429/503 carries no Retry-After: 1, 2, 4... seconds.
    backoff_s: float = 1.0

    def delay(self, response: httpx.Response, retries_done: int) -> float | None:
        """Seconds to wait before sending again, or None to raise the answer's error."""
        if response.status_code not in RETRY_STATUSES or retries_done >= self.max_retries:
            return None
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        if seconds is None:
            seconds = self.backoff_s * 2**retries_done
        return seconds if seconds <= self.max_wait_s else None


def client_headers(api_key: str | None) -> dict[str, str]:
    """Headers sent with every request."""
    headers = {"User-Agent": "artgen-client"}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    return headers


def job_create(
    request: JobCreate | Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> JobCreate:
    """The request as the server's own schema, validated here first (the same check it makes)."""
    if request is not None and fields:
        raise TypeError("give a JobCreate (or dict) or keyword fields, not both")
    if isinstance(request, JobCreate):
        return request
    try:
        return JobCreate.model_validate(dict(request if request is not None else fields))
    except ValidationError as error:
        raise local_validation_error(error) from None


def _read_file(upload: FileInput, default_name: str) -> tuple[str, bytes, str]:
    if isinstance(upload, bytes):
        return default_name, upload, "application/octet-stream"
    path = Path(upload)
    return path.name, path.read_bytes(), "application/octet-stream"


def submit_request(
    request: JobCreate,
    init_image: FileInput | None = None,
    image_prompts: Sequence[FileInput] = (),
    idempotency_key: str | None = None,
    source_video: FileInput | None = None,
) -> dict[str, Any]:
    """httpx.request keyword arguments for POST /v1/jobs: JSON, or multipart with files."""
    # Only what was given: the server fills in its defaults (the same schema, so the same ones).
    body = request.model_dump(mode="json", exclude_unset=True)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    files = [("image_prompts", _read_file(image, "image")) for image in image_prompts]
    if init_image is not None:
        files.insert(0, ("init_image", _read_file(init_image, "image")))
    if source_video is not None:
        files.append(("source_video", _read_file(source_video, "video")))
    if not files:
        return {"json": body, "headers": headers}
    return {"data": {"params": json.dumps(body)}, "files": files, "headers": headers}


def check(response: httpx.Response) -> httpx.Response:
    """The response when it is a success; else the server's error as an exception."""
    if response.is_success:
        return response
    raise api_error(response.status_code, response.content, response.headers.get("Retry-After"))


def list_query(status: str | None, limit: int, offset: int) -> dict[str, Any]:
    """Query parameters of GET /v1/jobs."""
    query: dict[str, Any] = {"limit": limit, "offset": offset}
    if status is not None:
        query["status"] = str(status)
    return query


def stream_timeout(timeout: httpx.Timeout) -> httpx.Timeout:
    """The client's timeout with a read timeout long enough for a quiet event stream."""
    return httpx.Timeout(
        connect=timeout.connect,
        read=STREAM_READ_TIMEOUT_S,
        write=timeout.write,
        pool=timeout.pool,
    )
