"""The lease: when an active job's attempt counts as lost or timed out, judged on our clock.

LeaseReaper keeps, per (job, attempt), when its worker's latest sign of life last changed (a
worker host's clock may be off, so silence is measured with ours), when a running job was first
seen with no trace in the queue at all, and when the attempt was first seen working (a step that
never returns keeps heart-beating, so the job timeout is also enforced here). It changes nothing:
the collector acts on its verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from artgen.config import Settings

AttemptKey = tuple[str, int]


class Verdict(StrEnum):
    """What the reaper decided about an attempt."""

    timed_out = "timed_out"
    lost = "lost"


class LeaseReaper:
    """Tracks signs of life per attempt and says when one is lost or past its timeout."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Running jobs whose attempt has no trace at all in the queue: when first seen so.
        self._silent_since: dict[AttemptKey, float] = {}
        # (job, attempt) -> (the worker's latest time stamp, our time when it last changed).
        self._last_sign: dict[AttemptKey, tuple[float, float]] = {}
        # (job, attempt) -> our time when the attempt was first seen working.
        self._attempt_seen: dict[AttemptKey, float] = {}

    def judge(
        self, key: AttemptKey, last_sign: float | None, running: bool, now: float
    ) -> Verdict | None:
        """The verdict on an attempt whose latest sign of life is `last_sign` (None: no trace)."""
        silent_since: float | None = None
        if last_sign is not None:
            self._silent_since.pop(key, None)
            seen = self._last_sign.get(key)
            if seen is None or seen[0] != last_sign:
                seen = self._last_sign[key] = (last_sign, now)
            silent_since = seen[1]
        elif running:
            # Its keys are gone (the queue lost its data): give the worker one lease to reappear.
            silent_since = self._silent_since.setdefault(key, now)
        if last_sign is not None and self._timed_out(key, now):
            return Verdict.timed_out
        if silent_since is not None and now - silent_since > self.settings.lease_seconds:
            self._silent_since.pop(key, None)
            self._last_sign.pop(key, None)
            return Verdict.lost
        return None

    def _timed_out(self, key: AttemptKey, now: float) -> bool:
        """True once an attempt has run past the job timeout plus a lease of grace.

        The worker enforces the timeout itself between iterations; this catches a step that never
        returns (its heartbeat thread keeps the lease alive)."""
        first_seen = self._attempt_seen.setdefault(key, now)
        limit = self.settings.job_timeout_seconds + self.settings.lease_seconds
        return now - first_seen > limit

    def keep_only(self, current: Iterable[AttemptKey]) -> None:
        """Forget the attempts that are no longer active."""
        current = set(current)
        for table in (self._last_sign, self._attempt_seen):
            for key in [key for key in table if key not in current]:
                del table[key]
