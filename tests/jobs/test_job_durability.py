"""Durability: fencing, the lease reaper, resume from checkpoints, a real SIGKILL of the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtools import BOTH_QUEUES, tiny_request

from artgen.config import Settings
from artgen.jobs.queue import Keys
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService
from artgen.jobs.store import JobStore
from artgen.jobs.worker import Worker
from artgen.jobs.worker_health import FORGET_WORKERS_AFTER_S
from support import image_bytes, wait_for

HERE = Path(__file__).parent


@pytest.fixture
def idle_service(settings: Settings) -> Iterator[JobService]:
    """A service whose collector is driven by hand (no thread), and no worker."""
    service = JobService.from_settings(settings)
    yield service
    service.close()


def pretend_worker(
    service: JobService, job_id: str, attempt: int, at: float, **reports: Any
) -> None:
    """Write what a worker running this attempt would write, stamped with time `at`."""
    stamp = {"worker_id": "fake", "time": at}
    service.queue.put_if_empty(Keys.claim(job_id, attempt), stamp)
    service.queue.put(Keys.heartbeat(job_id, attempt), stamp)
    for kind, value in reports.items():
        service.queue.put(Keys.attempt_key(kind, job_id, attempt), {"attempt": attempt, **value})


def drain_queue(service: JobService) -> list[tuple[str, int, dict[str, Any]]]:
    """Take every task out of the queue, returning (job_id, attempt, payload)."""
    tasks = [
        (task.job_id, task.attempt, dict(task.payload)) for task in service.queue.queued_tasks()
    ]
    service.queue.huey.storage.flush_queue()
    return tasks


@BOTH_QUEUES
def test_stale_attempt_reports_are_ignored(
    idle_service: JobService, settings: Settings, models_loader: Callable[..., Any]
) -> None:
    service = idle_service
    job, _ = service.submit(tiny_request(iterations=50))
    now = time.time()
    pretend_worker(service, job.id, 1, now, progress={"iteration": 3, "loss": 0.5, **stamp(now)})
    service.collector.poll(now=now)
    assert service.get(job.id).status == JobStatus.running
    assert service.get(job.id).iteration == 3

    # Attempt 1 goes silent past the lease: attempt 2 takes over.
    service.collector.poll(now=now + settings.lease_seconds + 1)
    job = service.get(job.id)
    assert job.attempt == 2 and job.status == JobStatus.queued
    assert service.queue.control(job.id)["attempt"] == 2

    # The old attempt was only slow: its late reports must change nothing.
    late = time.time()
    pretend_worker(
        service,
        job.id,
        1,
        late,
        progress={"iteration": 40, "loss": 0.1, **stamp(late)},
        preview={"iteration": 40, "png": b"not a png"},
        result={"status": "succeeded", "png": b"not a png", "iteration": 50},
    )
    # A value of attempt 1 under attempt 2's key (never written by our worker) is ignored too.
    service.queue.put(Keys.result(job.id, 2), {"attempt": 1, "status": "failed"})
    service.collector.poll(now=late)
    after = service.get(job.id)
    assert after.status == JobStatus.queued and after.attempt == 2
    assert after.iteration == job.iteration == 0  # no checkpoint: attempt 2 starts over
    assert after.preview_file is None and after.image_file is None

    # A worker dequeuing attempt 1's task now skips it without claiming anything.
    worker = Worker(settings, service.queue, models_loader)
    service.queue.delete(Keys.claim(job.id, 1))
    worker.run_task(job.id, 1, {"params": job.params})
    assert service.queue.peek(Keys.claim(job.id, 1)) is None


def stamp(at: float) -> dict[str, Any]:
    return {"worker_id": "fake", "time": at}


@BOTH_QUEUES
def test_reaper_requeues_with_checkpoint_then_gives_up(
    idle_service: JobService, settings: Settings
) -> None:
    service = idle_service
    job, _ = service.submit(tiny_request(iterations=50))
    assert [task[:2] for task in drain_queue(service)] == [(job.id, 1)]
    lease = settings.lease_seconds

    now = time.time()
    checkpoint = {"iteration": 8, "state": b"checkpoint-bytes"}
    pretend_worker(service, job.id, 1, now, checkpoint=checkpoint)
    service.collector.poll(now=now)
    assert service.get(job.id).checkpoint_iteration == 8

    for attempt in (1, 2):
        pretend_worker(service, job.id, attempt, now)
        service.collector.poll(now=now)  # its last sign of life, seen by the collector
        service.collector.poll(now=now + lease + 1)
        job = service.get(job.id)
        assert job.attempt == attempt + 1 and job.status == JobStatus.queued
        [(job_id, queued_attempt, payload)] = drain_queue(service)
        assert (job_id, queued_attempt) == (job.id, attempt + 1)
        # The new attempt resumes from the latest checkpoint, not from iteration 0.
        assert payload["checkpoint"] == b"checkpoint-bytes"
        assert payload["params"] == job.params

    pretend_worker(service, job.id, 3, now)
    service.collector.poll(now=now)
    service.collector.poll(now=now + lease + 1)
    job = service.get(job.id)
    assert job.status == JobStatus.failed and job.error.code == "worker_lost"
    assert job.checkpoint_file is None
    assert not service.store.file_path(job.id, "checkpoint.pt").exists()
    events = service.events(job.id)
    assert [e.data["status"] for e in events if e.type == "status"].count("queued") == 3
    assert events[-1].type == "done" and events[-1].data["error"]["code"] == "worker_lost"
    assert drain_queue(service) == []


def test_lost_job_with_cancel_requested_ends_canceled(
    idle_service: JobService, settings: Settings
) -> None:
    service = idle_service
    job, _ = service.submit(tiny_request())
    now = time.time()
    pretend_worker(service, job.id, 1, now)
    service.collector.poll(now=now)
    assert service.cancel(job.id).cancel_requested
    service.collector.poll(now=now + settings.lease_seconds + 1)
    assert service.get(job.id).status == JobStatus.canceled


@BOTH_QUEUES
def test_stopped_worker_hands_back_and_job_resumes(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    first = start_worker()
    job, _ = service.submit(tiny_request(iterations=60, seed=11))
    wait_for(lambda: service.get(job.id).iteration >= 6, 60)
    first.stop()  # like SIGTERM: checkpoint, hand the job back
    requeued = wait_for(lambda: (j := service.get(job.id)).attempt == 2 and j, 30)
    resumed_at = requeued.checkpoint_iteration
    assert resumed_at is not None and resumed_at >= 6

    start_worker()
    done = wait_for(lambda: (j := service.get(job.id)).status.terminal and j, 60)
    assert done.status == JobStatus.succeeded, done.error
    events = service.events(job.id)
    requeue_event = next(
        e.id for e in events if e.type == "status" and e.data["status"] == "queued" and e.id > 1
    )
    after = [e.data["iteration"] for e in events if e.type == "progress" and e.id > requeue_event]
    assert done.attempt == 2 and done.start_iteration == resumed_at  # continued, not restarted
    assert after and min(after) >= resumed_at

    # The resumed job ends exactly like an uninterrupted one with the same seed.
    reference, _ = service.submit(tiny_request(iterations=60, seed=11))
    wait_for(lambda: service.get(reference.id).status.terminal, 60)
    resumed_pixels = service.image_file(job.id).read_bytes()
    assert resumed_pixels == service.image_file(reference.id).read_bytes()


def test_sigkill_mid_job_then_restart_resumes(tmp_path: Path, models_home: Path) -> None:
    data_dir = tmp_path / "data"
    command = [sys.executable, str(HERE / "serve_jobs.py"), str(data_dir), str(models_home)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen(
        [*command, "--submit", "2", "60"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        job_ids = [first.stdout.readline().strip() for _ in range(2)]
        store = JobStore(data_dir)
        wait_for(lambda: (store.get(job_ids[0]).checkpoint_iteration or 0) >= 10, 90)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    killed = store.get(job_ids[0])
    assert killed.status == JobStatus.running and killed.iteration < 60
    checkpoint_iteration = killed.checkpoint_iteration

    second = subprocess.run([*command], env=env, timeout=120, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]

    resumed, queued = store.get(job_ids[0]), store.get(job_ids[1])
    assert resumed.status == JobStatus.succeeded and resumed.attempt == 2
    assert queued.status == JobStatus.succeeded and queued.attempt == 1
    events = store.events(resumed.id)
    requeue = [e.id for e in events if e.type == "status" and e.data["status"] == "queued"][1]
    after = [e.data["iteration"] for e in events if e.type == "progress" and e.id > requeue]
    assert min(after) >= checkpoint_iteration > 0  # resumed from the checkpoint, not from 0
    # The newest checkpoint may have reached the queue storage just before the kill.
    assert resumed.start_iteration >= checkpoint_iteration
    assert min(after) >= resumed.start_iteration
    assert store.active() == []
    for job in (resumed, queued):
        for name in job.file_names():
            assert store.file_path(job.id, name).stat().st_size > 0
    assert store.recover() == []  # no temp file, no record pointing at a missing file


def test_silence_is_judged_by_the_collectors_clock(
    idle_service: JobService, settings: Settings
) -> None:
    """Worker hosts' clocks may be off: a live worker whose clock is far behind is not reaped,
    a dead one whose clock was far ahead is reaped one lease after its last heartbeat."""
    service, lease = idle_service, settings.lease_seconds
    behind, _ = service.submit(tiny_request())
    ahead, _ = service.submit(tiny_request())
    now = time.time()
    for step in range(8):
        at = now + step * lease / 2
        pretend_worker(service, behind.id, 1, at - 1000)  # alive, an hour's quarter behind
        if step == 0:
            pretend_worker(service, ahead.id, 1, now + 1000)  # one heartbeat, then dead
        service.collector.poll(now=at)
        assert service.get(behind.id).attempt == 1
        assert service.get(ahead.id).attempt == (1 if step * lease / 2 <= lease else 2)


@BOTH_QUEUES
def test_worker_liveness_tolerates_clock_skew(idle_service: JobService, settings: Settings) -> None:
    service = idle_service
    settings.lease_seconds = 0.5
    now = time.time()
    behind, ahead = service.queue.register_worker(), service.queue.register_worker()

    def register(slot: int, name: str, heartbeat: float) -> None:
        info = {"id": name, "device": "cpu", "ready": True, "heartbeat": heartbeat}
        service.queue.put(Keys.worker(slot), info)

    def alive() -> set[str]:
        return {worker.id for worker in service.health().workers if worker.alive}

    register(behind, "behind", now - 1000)
    register(ahead, "ahead", now + 1000)
    assert alive() == {"ahead"}  # first look: only the stamps say anything
    # Each heart-beats again: the gap to our clock says how far off its clock is.
    register(behind, "behind", now - 999)
    register(ahead, "ahead", now + 1001)
    assert alive() == {"ahead", "behind"}
    time.sleep(0.6)  # a lease without a heartbeat from either: both dead, whatever their clocks
    assert alive() == set()
    assert service.health().workers_alive == 0
    assert len(service.health().workers) == 2  # dead, still listed for a while
    long_gone = service.queue.register_worker()
    register(long_gone, "long-gone", now - 2 * FORGET_WORKERS_AFTER_S)
    assert {worker.id for worker in service.health().workers} == {"behind", "ahead"}


@BOTH_QUEUES
def test_requeued_job_keeps_its_place_in_the_queue(
    idle_service: JobService, settings: Settings
) -> None:
    service = idle_service
    first, _ = service.submit(tiny_request())
    drain_queue(service)  # a worker took it
    later = [service.submit(tiny_request())[0] for _ in range(2)]
    now = time.time()
    pretend_worker(service, first.id, 1, now)
    service.collector.poll(now=now)
    service.collector.poll(now=now + settings.lease_seconds + 1)  # its worker died: requeued
    requeued = service.get(first.id)
    assert requeued.attempt == 2 and service.queue_position(requeued) == 0
    assert service.queue_position(service.get(later[0].id)) == 1
    order = [(job_id, attempt) for job_id, attempt, _ in drain_queue_in_order(service)]
    assert order == [(first.id, 2), (later[0].id, 1), (later[1].id, 1)]


def drain_queue_in_order(service: JobService) -> list[tuple[str, int, dict[str, Any]]]:
    """Dequeue every task the way workers do, in the order they would get them."""
    taken = []
    while (task := service.queue.dequeue()) is not None:
        taken.append(tuple(task.args))
    return taken


@BOTH_QUEUES
def test_the_audit_never_deserialises_upload_bytes(
    idle_service: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued jobs with big uploads: the audit (and recovery) read only small task messages,
    never the uploads, so the API's memory does not grow with the bytes waiting in the queue."""
    service = idle_service
    upload = os.urandom(1 << 20)
    jobs = [
        service.submit(tiny_request(seed=seed), init_image=upload, image_prompts=[upload])[0]
        for seed in range(3)
    ]
    serializer = service.queue.huey.serializer
    sizes: list[int] = []
    real_deserialize = serializer.deserialize

    def measured(data: bytes) -> Any:
        sizes.append(len(data))
        return real_deserialize(data)

    monkeypatch.setattr(serializer, "deserialize", measured)
    service.queue.flush()  # the queue lost everything: the audit enqueues the jobs again
    service.collector.audit(grace=0.0)
    assert service.queue.queued_attempts() == {(job.id, 1) for job in jobs}
    service.collector.audit(grace=0.0)  # all queued now: nothing to do
    service.collector.recover()
    assert sizes and max(sizes) < 64 * 1024, max(sizes)
    [task, *_] = service.queue.queued_tasks()
    assert task.payload["init_image"] == upload  # what the worker reads, when it runs the job


@BOTH_QUEUES
def test_a_task_whose_inputs_vanished_is_handed_back_and_runs_again(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    """The queue lost the inputs key but not the message: the worker hands the attempt back and
    the API enqueues it again with its inputs (counted as a lost attempt)."""
    upload = image_bytes()
    job, _ = service.submit(tiny_request(iterations=3, init_weight=0.5), init_image=upload)
    service.queue.delete(Keys.inputs(job.id, 1))
    start_worker()
    done = wait_for(lambda: (j := service.get(job.id)).status.terminal and j, 60)
    assert done.status == JobStatus.succeeded, done.error
    assert done.attempt == 2
