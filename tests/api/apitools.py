"""Helpers for the API tests: settings on tiny CPU models, images, polling, error checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from support import image_bytes, small_job

TERMINAL = {"succeeded", "failed", "canceled"}


# Shared with the other test directories; png_bytes is this directory's name for image_bytes.
png_bytes = image_bytes
__all__ = ["png_bytes", "small_job"]


def wait_for(
    client: TestClient,
    job_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in TERMINAL,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until `until(job)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck: {job}")
        time.sleep(0.05)


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    """Poll /readyz until the embedded worker has its models loaded."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"never ready: {client.get('/readyz').json()}")
        time.sleep(0.05)


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict:
    """The response is our JSON error with this status/code (and field), and no traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    if field is not None:
        fields = [body["error"].get("field")]
        fields += [detail["field"] for detail in body["error"].get("details", [])]
        assert field in fields, body
    return body
