"""Cancel and delete are durable and leave no queue key behind (issue 12, item 9).

The store records what an ended or deleted job still owes the queue; the collector's audit repeats
the stop signal while a task or a worker may act on the job, then clears every key. The audit is
run by hand here (`audit(now=...)`), so nothing waits on its timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from jobtools import BOTH_QUEUES, stored_keys, tiny_request

from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService
from support import wait_for


def later(service: JobService) -> float:
    """A time past the audit's grace and a lease: whatever ended before now is settled then."""
    return time.time() + service.collector.grace + service.settings.lease_seconds + 1


def queue_outage(monkeypatch: pytest.MonkeyPatch, queue: JobQueue) -> None:
    """Writes through this JobQueue (the API's) fail as if Redis were down; undo() ends it."""

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(queue, "put", down)
    monkeypatch.setattr(queue, "delete", down)


@BOTH_QUEUES
def test_a_canceled_queued_job_leaves_no_key_behind(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    job, _ = service.submit(tiny_request())
    assert service.cancel(job.id).status == JobStatus.canceled
    assert service.queue.control(job.id)["cancel"]
    start_worker()
    wait_for(lambda: service.queue.pending_count() == 0, 30)  # dequeued and skipped
    service.collector.audit(now=later(service))
    assert stored_keys(service.queue, job.id) == []
    assert service.store.queue_cleanups() == []
    assert service.get(job.id).status == JobStatus.canceled


@BOTH_QUEUES
def test_a_cancel_of_a_queued_job_during_an_outage_is_sent_again(
    service: JobService, start_worker: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _ = service.submit(tiny_request(iterations=2000))
    queue_outage(monkeypatch, service.queue)
    assert service.cancel(job.id).status == JobStatus.canceled  # recorded, flag not sent
    monkeypatch.undo()
    assert not (service.queue.control(job.id) or {}).get("cancel")
    service.collector.audit()  # its task still waits: the stop signal goes out again
    assert service.queue.control(job.id)["cancel"]
    handle = start_worker()
    wait_for(lambda: service.queue.pending_count() == 0, 30)
    assert not handle.worker.info.busy
    assert service.queue.peek(Keys.claim(job.id, 1)) is None  # never started
    service.collector.audit(now=later(service))
    assert stored_keys(service.queue, job.id) == []
    assert service.store.queue_cleanups() == []


@BOTH_QUEUES
def test_a_delete_of_a_running_job_during_an_outage_stops_it_later(
    service: JobService, start_worker: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = start_worker()
    job, _ = service.submit(tiny_request(iterations=5000))
    wait_for(lambda: service.get(job.id).iteration >= 2, 60)
    queue_outage(monkeypatch, service.queue)  # the API's writes fail; the worker's go through
    assert service.delete(job.id)
    monkeypatch.undo()
    assert handle.worker.info.busy  # nobody told it
    service.collector.audit()  # the attempt still shows signs of life: told to stop
    wait_for(lambda: not handle.worker.info.busy, 30)
    # The worker drops the deleted job's keys itself, the control key last. (Waiting only for
    # the claim, which goes first, let the audit below see the reports not yet dropped, count a
    # heartbeat newer than the first audit's as a sign of life and write the control key again.)
    wait_for(lambda: stored_keys(service.queue, job.id) == [], 30)
    service.collector.audit(now=later(service))  # nothing runs it: the store's record is settled
    assert stored_keys(service.queue, job.id) == []
    assert service.store.queue_cleanups() == []
    assert service.get(job.id) is None


@BOTH_QUEUES
def test_a_second_delete_cannot_write_the_control_key_again(
    service: JobService, start_worker: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two DELETEs of a running job that both read it before either removed it."""
    handle = start_worker()
    job, _ = service.submit(tiny_request(iterations=5000))
    wait_for(lambda: service.get(job.id).status == JobStatus.running, 60)
    read_before = service.get(job.id)
    assert service.delete(job.id)
    wait_for(lambda: not handle.worker.info.busy, 30)
    wait_for(lambda: stored_keys(service.queue, job.id) == [], 30)  # the worker cleared it
    monkeypatch.setattr(service, "get", lambda job_id, owner=None: read_before)
    assert not service.delete(job.id)  # the other one removed it
    assert stored_keys(service.queue, job.id) == []


@BOTH_QUEUES
def test_every_ended_job_is_cleared_by_the_audit(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    """Succeeded, canceled while running, and canceled before it ran: nothing stays."""
    start_worker()
    done, _ = service.submit(tiny_request(iterations=2))
    running, _ = service.submit(tiny_request(iterations=5000, seed=5))
    wait_for(lambda: service.get(done.id).status.terminal, 60)
    wait_for(lambda: service.get(running.id).status == JobStatus.running, 60)
    queued, _ = service.submit(tiny_request(seed=6))
    service.cancel(queued.id)
    service.cancel(running.id)
    wait_for(lambda: service.get(running.id).status == JobStatus.canceled, 30)
    wait_for(lambda: service.queue.pending_count() == 0, 30)
    service.collector.audit(now=later(service))
    for job in (done, running, queued):
        assert stored_keys(service.queue, job.id) == [], job.id
    assert service.store.queue_cleanups() == []
