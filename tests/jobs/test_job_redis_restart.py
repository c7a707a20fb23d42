"""A private redis-server killed and restarted empty while a job runs: nothing is lost."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtools import tiny_request

from artgen.config import Settings
from artgen.jobs.hosting import start_embedded_worker
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService
from support import RedisProcess, wait_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary"),
]


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.kill()


def test_redis_restart_mid_job(
    tmp_path: Path, redis_process: RedisProcess, models_loader: Callable[..., Any]
) -> None:
    settings = Settings(
        queue_url=f"redis://127.0.0.1:{redis_process.port}/0",
        data_dir=tmp_path / "data",
        home=tmp_path / "home",
        model="tiny",
        device="cpu",
        checkpoint_every=4,
        lease_seconds=1.5,
    )
    service = JobService.from_settings(settings)
    service.start()
    worker = start_embedded_worker(settings, service.queue, models_loader)
    try:
        running, _ = service.submit(tiny_request(iterations=150))
        waiting, _ = service.submit(tiny_request(iterations=4))
        wait_for(lambda: (service.get(running.id).checkpoint_iteration or 0) >= 4, 60)

        redis_process.kill()
        wait_for(lambda: not service.health().queue_ok, 10)  # readiness follows the queue
        assert not service.health().ready
        time.sleep(1.0)
        redis_process.start()  # empty: the waiting job's task and all reports are gone

        for job in (running, waiting):
            done = wait_for(lambda job=job: (j := service.get(job.id)).status.terminal and j, 90)
            assert done.status == JobStatus.succeeded, done.error
        wait_for(lambda: service.health().ready, 10)
    finally:
        worker.stop()
        service.close()
