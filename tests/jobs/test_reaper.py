"""LeaseReaper: silence on our clock, a lost attempt, the job timeout (no sleeping: times given)."""

from __future__ import annotations

from artgen.config import Settings
from artgen.jobs.reaper import LeaseReaper, Verdict


def reaper() -> LeaseReaper:
    return LeaseReaper(Settings(lease_seconds=5.0, job_timeout_seconds=100.0))


def test_an_attempt_is_lost_a_lease_after_its_sign_stopped_changing() -> None:
    lease = reaper()
    key = ("job", 1)
    assert lease.judge(key, 1000.0, True, now=0.0) is None
    assert lease.judge(key, 1000.0, True, now=5.0) is None  # exactly a lease: not yet
    assert lease.judge(key, 1001.0, True, now=5.5) is None  # a new sign: silence starts again
    assert lease.judge(key, 1001.0, True, now=10.0) is None
    assert lease.judge(key, 1001.0, True, now=10.6) == Verdict.lost


def test_a_worker_clock_far_off_does_not_matter() -> None:
    lease = reaper()
    key = ("job", 1)
    assert lease.judge(key, -1e9, True, now=0.0) is None  # stamps compared with themselves only
    assert lease.judge(key, -1e9 + 1, True, now=4.0) is None


def test_a_running_job_without_any_trace_gets_one_lease() -> None:
    lease = reaper()
    assert lease.judge(("job", 1), None, True, now=0.0) is None
    assert lease.judge(("job", 1), None, True, now=6.0) == Verdict.lost
    # A queued job without a trace is the audit's business, not the lease's.
    assert lease.judge(("other", 1), None, False, now=0.0) is None
    assert lease.judge(("other", 1), None, False, now=60.0) is None


def test_an_attempt_that_keeps_heart_beating_past_the_timeout_times_out() -> None:
    lease = reaper()
    key = ("job", 1)
    assert lease.judge(key, 0.0, True, now=0.0) is None
    for now in range(1, 105, 2):
        assert lease.judge(key, float(now), True, now=float(now)) is None
    assert lease.judge(key, 106.0, True, now=106.0) == Verdict.timed_out


def test_forgotten_attempts_start_afresh() -> None:
    lease = reaper()
    key = ("job", 1)
    lease.judge(key, 0.0, True, now=0.0)
    lease.keep_only([])
    assert lease.judge(key, 0.0, True, now=104.0) is None  # first seen again now
