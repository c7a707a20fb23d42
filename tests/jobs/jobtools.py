"""Helpers shared by the job tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

from typing import Any

import pytest

from artgen.jobs.schemas import JobCreate

# Tests use their own key namespace (?name=) on this database of the local redis-server.
REDIS_URL = "redis://127.0.0.1:6379/15"

# Runs a test on the embedded SQLite queue and on Redis (the `settings` fixture reads the param).
BOTH_QUEUES = pytest.mark.parametrize(
    "settings", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)


def redis_available() -> bool:
    """Whether a redis-server answers at REDIS_URL."""
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


def tiny_request(**overrides: Any) -> JobCreate:
    """A job small enough for CPU tests (32x32, 2 cutouts, no augmentation)."""
    fields: dict[str, Any] = {
        "prompts": "a red square",
        "width": 32,
        "height": 32,
        "iterations": 12,
        "cutn": 2,
        "augment": False,
        "seed": 3,
        "preview_every": 4,
    }
    fields.update(overrides)
    return JobCreate(**fields)


def stored_keys(queue: Any, job_id: str) -> list[str]:
    """Every key of the queue's key-value storage that belongs to the job (any kind)."""
    storage = queue.huey.storage
    if hasattr(storage, "result_key"):  # Redis: one hash per queue name
        keys = [key.decode() for key in storage.conn.hkeys(storage.result_key)]
    else:  # SQLite: the kv table
        rows = storage.sql("select key from kv where queue = ?", (storage.name,), results=True)
        keys = [row[0] for row in rows]
    return sorted(key for key in keys if job_id in key)
