"""hosting.py: both kinds of the API process's own worker answer as a HostedWorker."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from artgen.config import Settings
from artgen.jobs.hosting import EmbeddedWorker, HostedWorker, WorkerProcess
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import ServiceHealth, WorkerInfo
from artgen.jobs.worker import Worker
from support import wait_for


def test_an_embedded_worker_is_ready_once_its_models_are_loaded(
    settings: Settings, models_loader: Callable[..., Any]
) -> None:
    queue = JobQueue.from_url(settings.resolved_queue_url)
    hosted: HostedWorker = EmbeddedWorker(Worker(settings, queue, models_loader, worker_id="w1"))
    health = ServiceHealth(queue_ok=True, workers=[])
    assert hosted.worker_id == "w1" and hosted.exit_code is None
    assert not hosted.alive and not hosted.ready(health)
    assert isinstance(hosted, EmbeddedWorker)
    hosted.start()
    try:
        wait_for(lambda: hosted.ready(health), 30)  # read from the thread's Worker itself
        assert hosted.alive
    finally:
        hosted.stop()
    assert not hosted.alive


def test_a_worker_process_is_ready_as_its_own_registration_says() -> None:
    process = SimpleNamespace(is_alive=lambda: False, exitcode=3, pid=None)
    hosted: HostedWorker = WorkerProcess(process, "child")  # type: ignore[arg-type]
    assert hosted.worker_id == "child" and hosted.exit_code == 3 and not hosted.alive
    mine = WorkerInfo(id="child", device="cpu", alive=True, ready=True)
    stale = WorkerInfo(id="someone-else", device="cpu", alive=True, ready=True)
    assert not hosted.ready(ServiceHealth(queue_ok=True, workers=[stale]))
    assert hosted.ready(ServiceHealth(queue_ok=True, workers=[stale, mine]))
    loading = mine.model_copy(update={"ready": False})
    assert not hosted.ready(ServiceHealth(queue_ok=True, workers=[loading]))
