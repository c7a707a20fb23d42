"""Optional API keys, job ownership and per-key limits."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import deque

from artgen.api.errors import ApiError

API_KEY_HEADER = "X-API-Key"


def owner_of(key: str) -> str:
    """The owner recorded on a job: a hash of its key, so the key itself is never stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def authenticate(provided: str | None, api_keys: list[str]) -> str | None:
    """The caller's owner id; None when keys are off; 401 without a valid key."""
    if not api_keys:
        return None
    if not provided:
        raise ApiError(
            401,
            "unauthorized",
            f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    given = provided.encode("utf-8")
    # Compare against every key (no early exit) so timing says nothing about which matched.
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(given, key.encode("utf-8"))
    if not matched:
        raise ApiError(
            401,
            "unauthorized",
            "invalid API key",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    return owner_of(provided)


class RateLimiter:
    """Sliding one-minute window of submissions per caller (owner id, or client address)."""

    def __init__(self, per_minute: int, window_seconds: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_seconds = window_seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, caller: str, now: float | None = None) -> None:
        """Count one request for `caller`, or raise 429 with Retry-After when over the limit."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(caller, deque())
            while hits and hits[0] <= now - self.window_seconds:
                hits.popleft()
            if len(hits) >= self.per_minute:
                retry_after = max(1, math.ceil(hits[0] + self.window_seconds - now))
                raise ApiError(
                    429,
                    "rate_limited",
                    f"rate limit of {self.per_minute} submissions per minute reached; "
                    f"retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
            hits.append(now)
            # Forget idle callers so the table stays bounded by recent activity.
            if len(self._hits) > 10_000:
                for name in [name for name, times in self._hits.items() if not times]:
                    del self._hits[name]


def check_active_jobs(active: int, limit: int) -> None:
    """429 when a key already has `limit` queued or running jobs."""
    if limit > 0 and active >= limit:
        raise ApiError(
            429,
            "rate_limited",
            f"this key already has {active} queued or running jobs (limit {limit}); "
            "wait for one to finish or cancel one",
            headers={"Retry-After": "5"},
        )
