"""Worker behaviour: failures map to job error codes, model errors keep a worker out of work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
from jobtools import BOTH_QUEUES, tiny_request

import artgen.engine.generate as generate
import artgen.jobs.control as control_module
from artgen.config import Settings
from artgen.devices import resolve_device
from artgen.jobs.hosting import start_embedded_worker
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService
from artgen.jobs.worker import Worker
from support import wait_for


def finished(service: JobService, job_id: str) -> Any:
    job = service.get(job_id)
    return job if job is not None and job.status.terminal else None


def test_gpu_out_of_memory_fails_the_job_and_the_worker_goes_on(
    service: JobService, start_worker: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = generate.Generation.step
    calls = []

    def step_out_of_memory_once(self: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self)

    monkeypatch.setattr(generate.Generation, "step", step_out_of_memory_once)
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    start_worker()
    first, _ = service.submit(tiny_request(iterations=3))
    second, _ = service.submit(tiny_request(iterations=3))
    failed = wait_for(lambda: finished(service, first.id), 60)
    assert failed.status == JobStatus.failed and failed.error.code == "gpu_out_of_memory"
    assert "Tried to allocate" not in failed.error.message
    assert emptied
    assert wait_for(lambda: finished(service, second.id), 60).status == JobStatus.succeeded


def test_unexpected_errors_are_internal_without_details(
    service: JobService, start_worker: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret/path/in/a/traceback")

    monkeypatch.setattr(generate.Generation, "step", broken)
    start_worker()
    job, _ = service.submit(tiny_request(iterations=3))
    done = wait_for(lambda: finished(service, job.id), 60)
    assert done.error.code == "internal_error" and "secret" not in done.error.message


def test_memory_error_and_timeout(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_step = generate.Generation.step

    def memory_error_for_big_jobs(self: Any) -> Any:
        if self.params.iterations == 7:
            raise MemoryError()
        return real_step(self)

    monkeypatch.setattr(generate.Generation, "step", memory_error_for_big_jobs)
    settings.job_timeout_seconds = 0.3
    start_worker()
    oom, _ = service.submit(tiny_request(iterations=7))
    slow, _ = service.submit(tiny_request(iterations=5000))
    assert wait_for(lambda: finished(service, oom.id), 60).error.code == "out_of_memory"
    timed_out = wait_for(lambda: finished(service, slow.id), 60)
    assert timed_out.error.code == "timeout" and timed_out.iteration < 5000


@BOTH_QUEUES
def test_worker_that_cannot_load_its_model_takes_no_jobs(
    settings: Settings, service: JobService
) -> None:
    def cannot_load(vqgan: str, clips: list[str], device: torch.device) -> Any:
        raise FileNotFoundError("wikiart_16384.ckpt is missing; run `artgen models download`")

    handle = start_embedded_worker(settings, service.queue, cannot_load)
    try:
        # Its first heartbeat may come before the load failed: wait for the failure.
        health = wait_for(
            lambda: (h := service.health()).workers and h.workers[0].model_error and h, 30
        )
        [worker] = health.workers
        # What clients see names no server detail; the log has the exception.
        assert worker.alive and not worker.ready and "FileNotFoundError" in worker.model_error
        assert not health.ready
        job, _ = service.submit(tiny_request(iterations=2))
        # The job stays queued: nobody able to run it took it.
        assert service.queue.pending_count() == 1
        assert service.get(job.id).status == JobStatus.queued
    finally:
        handle.stop()
    worker = wait_for(lambda: service.health().workers[0].stopped and service.health(), 10)
    assert worker.workers_alive == 0


@BOTH_QUEUES
def test_two_workers_share_four_jobs(
    settings: Settings, service: JobService, start_worker: Callable[[], Any]
) -> None:
    first, second = start_worker(), start_worker()
    jobs = [service.submit(tiny_request(iterations=12))[0] for _ in range(4)]
    done = [wait_for(lambda job=job: finished(service, job.id), 60) for job in jobs]
    assert all(job.status == JobStatus.succeeded for job in done)
    assert {job.worker_id for job in done} == {first.worker.id, second.worker.id}
    assert all(job.attempt == 1 for job in done)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@BOTH_QUEUES
def test_queue_data_loss_is_repaired(
    settings: Settings, service: JobService, start_worker: Callable[[], Any]
) -> None:
    """Like a Redis restart without persistence: tasks, reports and registrations vanish."""
    settings.lease_seconds = 1.0
    handle = start_worker()
    wait_for(lambda: service.health().ready, 10)
    service.queue.flush()
    # A live worker notices its registration is gone and registers again.
    health = wait_for(lambda: (h := service.health()).ready and h, 10)
    assert [worker.id for worker in health.workers] == [handle.worker.id]

    handle.worker.request_stop()
    wait_for(lambda: service.health().workers_alive == 0, 10)
    job, _ = service.submit(tiny_request(iterations=3))
    service.queue.flush()
    assert service.queue.pending_count() == 0

    worker = start_worker()
    # The collector's audit enqueues again the job whose task was lost.
    done = wait_for(lambda: finished(service, job.id), 30)
    assert done.status == JobStatus.succeeded and done.worker_id == worker.worker.id


@BOTH_QUEUES
def test_workers_register_again_apart_after_queue_data_loss(settings: Settings) -> None:
    """After the storage is wiped, each worker ends up with its own registration, whatever
    order they notice in (the later one must not keep a slot the earlier one took)."""
    queue = JobQueue.from_url(settings.resolved_queue_url)
    first, second = (Worker(settings, queue, worker_id=name) for name in ("first", "second"))
    try:
        for worker in (first, second):
            worker.presence.slot = queue.register_worker()
            worker.presence.publish()
        assert sorted(info["id"] for info in queue.workers()) == ["first", "second"]
        queue.flush()
        # It held slot 2 and now gets slot 1, the slot `first` still holds.
        second.presence.publish()
        first.presence.publish()
        second.presence.publish()
        assert sorted(info["id"] for info in queue.workers()) == ["first", "second"]
    finally:
        queue.flush()
        queue.close()


def test_model_cache_is_an_lru_of_configured_size_and_loads_duplicate_clips_once(
    settings: Settings, tiny_models: Any
) -> None:
    """No job can pin memory for good: ["tiny"] * 30 loads one critic, sets beyond
    model_cache_size are evicted least recently used first, the default set stays."""
    loads: list[tuple[str, tuple[str, ...]]] = []

    def counting(vqgan: str, clips: list[str], device: torch.device) -> Any:
        loads.append((vqgan, tuple(clips)))
        return replace(tiny_models, critics=[tiny_models.critics[0]] * len(clips))

    settings.model_cache_size = 3
    queue = JobQueue.from_url(settings.resolved_queue_url)
    worker = Worker(settings, queue, counting)
    try:
        default = worker.models.get("tiny", ("tiny",))
        many = worker.models.get("tiny", ("tiny",) * 30)
        assert loads == [("tiny", ("tiny",)), ("tiny", ("tiny",))]  # each name loaded once
        assert len(many.critics) == 30 and len({id(critic) for critic in many.critics}) == 1
        assert worker.models.get("tiny", ("tiny",) * 30) is many  # cached, one object
        worker.models.get("tiny", ("a",))
        worker.models.get("tiny", ("tiny",) * 30)  # used again: now the most recent
        worker.models.get("tiny", ("b",))  # full: evicts ("a",), the least recently used
        assert list(worker.models.loaded) == [
            ("tiny", ("tiny",)),
            ("tiny", ("tiny",) * 30),
            ("tiny", ("b",)),
        ]
        for name in ("c", "d", "e"):
            worker.models.get("tiny", (name,))
        assert len(worker.models.loaded) == 3
        assert worker.models.get("tiny", ("tiny",)) is default  # never evicted
    finally:
        queue.close()


@BOTH_QUEUES
def test_a_job_canceled_while_its_prompts_are_embedded_stops_there(
    service: JobService, start_worker: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup (embedding a long schedule) is cancellable: the rest is never embedded."""
    monkeypatch.setattr(control_module, "CONTROL_INTERVAL_S", 0.0)  # look before every embedding
    schedule = [{"at": index + 1, "prompts": f"scene {index}"} for index in range(40)]
    job, _ = service.submit(tiny_request(iterations=50, schedule=schedule))
    embedded: list[str] = []
    real_embed = generate.Generation._embed_texts

    def embed_and_cancel_at_the_third(self: Any, text: str) -> Any:
        embedded.append(text)
        if len(embedded) == 3:
            service.cancel(job.id)
        return real_embed(self, text)

    monkeypatch.setattr(generate.Generation, "_embed_texts", embed_and_cancel_at_the_third)
    handle = start_worker()
    done = wait_for(lambda: finished(service, job.id), 60)
    assert done.status == JobStatus.canceled
    wait_for(lambda: not handle.worker.info.busy, 30)
    assert len(embedded) == 3  # of 41 prompt sets
