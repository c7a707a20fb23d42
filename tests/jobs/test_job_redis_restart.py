"""A private redis-server killed and restarted empty while a job runs: nothing is lost."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtools import tiny_request, wait_for

from artgen.config import Settings
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService
from artgen.jobs.worker import start_embedded_worker

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A throwaway redis-server without persistence (a restart comes back empty)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


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
