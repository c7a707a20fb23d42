"""Worker-level batching: queued jobs of one size and model set step together in one batch."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from jobtools import BOTH_QUEUES, stored_keys, tiny_request
from PIL import Image

from artgen.config import Settings
from artgen.engine.batch import BatchGeneration
from artgen.jobs import batching as batching_module
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import Job, JobStatus
from artgen.jobs.service import JobService
from artgen.jobs.worker import Worker
from support import wait_for

JOBS = [
    {"prompts": "a red square", "seed": 1},
    {"prompts": "the sea:2 | fog:-1", "seed": 2, "step_size": 0.2},
    {"prompts": "a forest", "seed": 3, "optimizer": "adamw", "init_weight": 0.5},
]


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Members of every batched step the workers take, in order."""
    sizes: list[int] = []
    real_step = BatchGeneration.step

    def recording_step(self: BatchGeneration) -> Any:
        sizes.append(len(self.generations))
        return real_step(self)

    monkeypatch.setattr(BatchGeneration, "step", recording_step)
    return sizes


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each job's generation was built (once, unless requeued)."""
    counts: Counter[str] = Counter()
    real_new_run = Worker._new_run

    def counting(self: Worker, job_id: str, attempt: int, payload: dict[str, Any]) -> Any:
        counts[job_id] += 1
        return real_new_run(self, job_id, attempt, payload)

    monkeypatch.setattr(Worker, "_new_run", counting)
    return counts


def fail_first_step_of(
    monkeypatch: pytest.MonkeyPatch, members: int, error: Exception
) -> list[int]:
    """The first batched step of `members` jobs raises `error`; returns every step's size."""
    sizes: list[int] = []
    real_step = BatchGeneration.step

    def failing_step(self: BatchGeneration) -> Any:
        sizes.append(len(self.generations))
        if len(self.generations) == members and sizes.count(members) == 1:
            raise error
        return real_step(self)

    monkeypatch.setattr(BatchGeneration, "step", failing_step)
    return sizes


def ended(service: JobService, *job_ids: str, timeout: float = 120) -> list[Job]:
    """Wait until every job is terminal; return them in order."""

    def all_ended() -> list[Job] | None:
        jobs = [service.get(job_id) for job_id in job_ids]
        return jobs if all(job is not None and job.status.terminal for job in jobs) else None

    return wait_for(all_ended, timeout)


def pixels(service: JobService, job: Job) -> np.ndarray:
    data = service.store.read_file(job.id, job.image_file)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@BOTH_QUEUES
def test_same_size_jobs_step_together_and_each_equals_its_run_alone(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    batch_sizes: list[int],
    starts: Counter[str],
) -> None:
    settings.batch_jobs = 3
    jobs = [service.submit(tiny_request(**fields))[0] for fields in JOBS]
    start_worker()
    batched = ended(service, *(job.id for job in jobs))
    assert [job.status for job in batched] == [JobStatus.succeeded] * 3
    # All three were queued when the worker started: every step ran them together.
    assert batch_sizes and set(batch_sizes) == {3}
    assert all(starts[job.id] == 1 for job in jobs)
    assert [job.seed for job in batched] == [1, 2, 3]

    # The same requests alone (nothing else queued, so nothing to batch with): same images.
    for fields, together in zip(JOBS, batched, strict=True):
        sizes_before = len(batch_sizes)
        alone = ended(service, service.submit(tiny_request(**fields))[0].id)[0]
        assert alone.status == JobStatus.succeeded
        assert set(batch_sizes[sizes_before:]) == {1}
        assert psnr(pixels(service, alone), pixels(service, together)) > 40
    # The joined jobs' queue messages were revoked: dequeued and skipped, never run again.
    wait_for(lambda: service.queue.pending_count() == 0, 10)
    assert sum(starts.values()) == 6


def test_only_same_size_jobs_share_a_batch_within_the_pixel_budget(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    batch_sizes: list[int],
) -> None:
    settings.batch_jobs = 8
    settings.batch_pixels = 2 * 32 * 32
    small = [service.submit(tiny_request(seed=seed))[0] for seed in range(3)]
    large = service.submit(tiny_request(width=48, height=48, seed=9))[0]
    start_worker()
    done = ended(service, *(job.id for job in small), large.id)
    assert all(job.status == JobStatus.succeeded for job in done), [j.error for j in done]
    # Two 32x32 jobs fill the budget; the third runs once one of them is done; the 48x48 job
    # never joins them (a batch with mixed sizes would have failed its jobs).
    assert max(batch_sizes) == 2 and 1 in batch_sizes


def test_canceling_one_member_leaves_the_others_running(
    settings: Settings, service: JobService, start_worker: Callable[[], Any]
) -> None:
    settings.batch_jobs = 3
    jobs = [service.submit(tiny_request(iterations=100, seed=seed))[0] for seed in range(3)]
    handle = start_worker()
    wait_for(lambda: len(handle.worker.info.job_ids) == 3, 30)
    wait_for(lambda: service.get(jobs[1].id).iteration >= 3, 30)
    service.cancel(jobs[1].id)
    done = ended(service, *(job.id for job in jobs))
    assert [job.status for job in done] == [
        JobStatus.succeeded,
        JobStatus.canceled,
        JobStatus.succeeded,
    ]
    assert done[1].iteration < 100


def test_out_of_memory_in_a_batch_hands_half_back_and_batches_less(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.batch_jobs = 4
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
    sizes = fail_first_step_of(monkeypatch, 4, oom)
    jobs = [service.submit(tiny_request(seed=seed))[0] for seed in range(4)]
    handle = start_worker()
    done = ended(service, *(job.id for job in jobs))
    assert all(job.status == JobStatus.succeeded for job in done), [j.error for j in done]
    assert sizes[0] == 4 and max(sizes[1:]) == 2
    assert handle.worker.batch_jobs == 2 and handle.worker.info.batch_jobs == 2
    # The two that joined last were handed back (a new attempt each), nothing was lost.
    assert sorted(job.attempt for job in done) == [1, 1, 2, 2]


def test_shutdown_hands_every_member_back_and_they_resume(
    settings: Settings, service: JobService, start_worker: Callable[[], Any]
) -> None:
    settings.batch_jobs = 2
    jobs = [service.submit(tiny_request(iterations=120, seed=seed))[0] for seed in range(2)]
    handle = start_worker()
    wait_for(lambda: all((job := service.get(j.id)) and job.iteration >= 5 for j in jobs), 60)
    handle.stop()
    requeued = wait_for(
        lambda: (
            all(service.get(j.id).attempt == 2 for j in jobs) and [service.get(j.id) for j in jobs]
        ),
        30,
    )
    assert all(job.status == JobStatus.queued and job.checkpoint_file for job in requeued)
    start_worker()
    done = ended(service, *(job.id for job in jobs))
    assert all(job.status == JobStatus.succeeded for job in done)
    # They resumed from their checkpoints instead of starting over.
    assert all(job.start_iteration and job.start_iteration > 0 for job in done)


@BOTH_QUEUES
def test_two_batching_workers_run_each_job_once(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    starts: Counter[str],
) -> None:
    settings.batch_jobs = 3
    jobs = [service.submit(tiny_request(iterations=20, seed=seed))[0] for seed in range(6)]
    start_worker()
    start_worker()
    done = ended(service, *(job.id for job in jobs))
    assert all(job.status == JobStatus.succeeded for job in done)
    assert all(job.attempt == 1 for job in done)
    assert all(starts[job.id] == 1 for job in jobs)


def test_an_unchanged_queue_is_not_read_again(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.batch_jobs = 2
    # No periodic rescan within the test: only a change of the queue or the batch reads it again.
    monkeypatch.setattr(batching_module, "BATCH_RESCAN_S", float("inf"))
    scans: list[int] = []
    real_queued_tasks = JobQueue.queued_tasks

    def counting(self: JobQueue, limit: int | None = None) -> Any:
        scans.append(limit or 0)
        return real_queued_tasks(self, limit)

    monkeypatch.setattr(JobQueue, "queued_tasks", counting)
    running = service.submit(tiny_request(iterations=80))[0]
    other_size = service.submit(tiny_request(width=48, height=48, iterations=2))[0]
    start_worker()
    done = ended(service, running.id, other_size.id)
    assert all(job.status == JobStatus.succeeded for job in done)
    # While the 32x32 job ran (80 steps, a look every step), the 48x48 one waited unchanged in
    # the queue: the worker read the queue once for it, however long the run took.
    assert len(scans) == 1


@BOTH_QUEUES
def test_a_joined_job_that_finished_first_never_runs_again(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    starts: Counter[str],
) -> None:
    settings.batch_jobs = 3
    long = service.submit(tiny_request(seed=1, iterations=100))[0]
    short = service.submit(tiny_request(seed=2, iterations=10))[0]
    handle = start_worker()
    done = ended(service, long.id, short.id)
    assert all(job.status == JobStatus.succeeded for job in done)
    # The short job's own queue message is dequeued after the long one ends: it must be skipped.
    wait_for(lambda: service.queue.pending_count() == 0 and not handle.worker.info.busy, 30)
    assert starts[short.id] == 1 and starts[long.id] == 1
    # While its message waited the audit may have kept a stop signal for it; once settled,
    # nothing of either job is left.
    settled = time.time() + service.collector.grace + settings.lease_seconds + 1
    service.collector.audit(now=settled)
    assert stored_keys(service.queue, short.id) == [] and stored_keys(service.queue, long.id) == []


def test_a_failed_batched_step_fails_no_job_for_the_others(
    settings: Settings,
    service: JobService,
    start_worker: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.batch_jobs = 3
    sizes = fail_first_step_of(monkeypatch, 3, RuntimeError("cuDNN error: an unlucky kernel"))
    jobs = [service.submit(tiny_request(seed=seed))[0] for seed in range(3)]
    start_worker()
    done = ended(service, *(job.id for job in jobs))
    # Nobody knows which job broke the step: the first went on, the others were handed back
    # and ran alone (batching paused), so every job succeeded.
    assert [job.status for job in done] == [JobStatus.succeeded] * 3, [j.error for j in done]
    assert [job.attempt for job in done] == [1, 2, 2]
    assert sizes[0] == 3 and set(sizes[1:]) == {1}
