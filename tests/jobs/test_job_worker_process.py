"""`run_worker` as real processes on Redis: SIGTERM hands the job back, SIGKILL is reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jobtools import tiny_request

from artgen.config import Settings
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService
from support import wait_for

WORKER = (
    "import logging, torch; logging.basicConfig(level=logging.INFO); torch.set_num_threads(1); "
    "from artgen.config import Settings; "
    "from artgen.jobs.hosting import run_worker; raise SystemExit(run_worker(Settings()))"
)


@pytest.fixture
def spawn_worker(settings: Settings) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Start `run_worker` processes configured through ARTGEN_* like `artgen worker`."""
    processes: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ARTGEN_QUEUE_URL": settings.resolved_queue_url,
        "ARTGEN_MODEL": "tiny",
        "ARTGEN_DEVICE": "cpu",
        "ARTGEN_HOME": str(settings.home),
        "ARTGEN_CHECKPOINT_EVERY": str(settings.checkpoint_every),
        "ARTGEN_LEASE_SECONDS": str(settings.lease_seconds),
    }

    def spawn() -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", WORKER], env=env, text=True)
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def running_on_new_worker(service: JobService, job_id: str, attempt: int) -> Any:
    job = service.get(job_id)
    ok = job.status == JobStatus.running and job.attempt == attempt
    # Started (progress seen) and checkpointed at least once since.
    started = job.start_iteration is not None
    return job if ok and started and (job.checkpoint_iteration or 0) > job.start_iteration else None


@pytest.mark.redis
@pytest.mark.parametrize("settings", ["redis"], indirect=True)
def test_worker_processes_sigterm_then_sigkill(
    settings: Settings,
    service: JobService,
    spawn_worker: Callable[[], subprocess.Popen[str]],
    start_worker: Callable[[], Any],
) -> None:
    settings.lease_seconds = 2.0
    job, _ = service.submit(tiny_request(iterations=150, preview_every=10))

    # 1. SIGTERM: the worker checkpoints, hands the job back and exits cleanly.
    first = spawn_worker()
    wait_for(lambda: running_on_new_worker(service, job.id, 1), 90)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    handed_back = wait_for(lambda: (j := service.get(job.id)).attempt == 2 and j, 10)
    assert handed_back.checkpoint_iteration >= handed_back.iteration > 0

    # 2. SIGKILL: no goodbye; the reaper notices the silence after the lease and requeues.
    second = spawn_worker()
    running = wait_for(lambda: running_on_new_worker(service, job.id, 2), 90)
    assert running.start_iteration == handed_back.checkpoint_iteration
    second.send_signal(signal.SIGKILL)
    second.wait(10)
    requeued = wait_for(lambda: (j := service.get(job.id)).attempt == 3 and j, 30)
    assert requeued.status == JobStatus.queued

    # 3. Another worker resumes from the last checkpoint and finishes.
    start_worker()
    done = wait_for(lambda: (j := service.get(job.id)).status.terminal and j, 90)
    assert done.status == JobStatus.succeeded, done.error
    assert done.attempt == 3 and done.start_iteration >= running.checkpoint_iteration
