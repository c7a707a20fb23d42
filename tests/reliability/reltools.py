"""Helpers for the reliability tests: tiny-model settings, job bodies, images, waits, data dirs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import image_bytes
from support import small_job as support_small_job

TERMINAL = {"succeeded", "failed", "canceled"}
# Files a finished job may leave in its directory (the checkpoint is removed at the end).
JOB_FILES = {"input.png", "preview.png", "final.png", "video.mp4"}


def small_job(**overrides: Any) -> dict[str, Any]:
    """support.small_job with 2 cutouts: these tests run many jobs."""
    return support_small_job(**{"cutn": 2, **overrides})


__all__ = ["image_bytes", "small_job"]


def wait_until(
    read: Callable[[], dict[str, Any]],
    until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in TERMINAL,
    timeout: float = 60.0,
    interval: float = 0.05,
) -> dict[str, Any]:
    """Call `read` until `until(value)` holds; AssertionError with the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout:.0f} s: {value}")
        time.sleep(interval)


def data_dir_snapshot(data_dir: Path) -> set[str]:
    """Every file under data_dir/jobs (relative paths): what the jobs left on disk."""
    jobs_dir = data_dir / "jobs"
    if not jobs_dir.exists():
        return set()
    return {str(path.relative_to(jobs_dir)) for path in jobs_dir.rglob("*")}


def integrity_check(db_path: Path) -> str:
    """`PRAGMA integrity_check` of a SQLite file, read-only ("ok" when healthy)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return str(conn.execute("pragma integrity_check").fetchone()[0])
    finally:
        conn.close()


def stored_jobs(db_path: Path) -> list[dict[str, Any]]:
    """Every job record of a (stopped) server's database, as the JSON the store keeps."""
    import json

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return [json.loads(row[0]) for row in conn.execute("select data from jobs")]
    finally:
        conn.close()


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict:
    """The response is our JSON error with this status/code (and field), and no traceback."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    if field is not None:
        fields = [body["error"].get("field")]
        fields += [detail["field"] for detail in body["error"].get("details") or []]
        assert field in fields, body
    return body


def load_benchmark() -> Any:
    """benchmarks/load.py as a module: the tests run its scenarios at a smaller size."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"
    if "artgen_load_benchmark" in sys.modules:
        return sys.modules["artgen_load_benchmark"]
    spec = importlib.util.spec_from_file_location("artgen_load_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running so its dataclasses can resolve their own module.
    sys.modules["artgen_load_benchmark"] = module
    spec.loader.exec_module(module)
    return module
