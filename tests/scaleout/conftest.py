"""Fixtures for the scale-out tests: a private redis-server and a cluster per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from scaleout_tools import Cluster

from artgen.jobs.queue import JobQueue
from support import REDIS_SERVER, RedisProcess


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One private redis-server for the session (tests use their own key namespace)."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH (install redis-server to run these)")
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def cluster(redis_server: RedisProcess, tmp_path: Path) -> Iterator[Cluster]:
    """An API-side service on a fresh queue namespace; worker processes are spawned by the test."""
    url = f"{redis_server.url}?name=scaleout_{uuid.uuid4().hex}"
    cluster = Cluster(tmp_path, url)
    yield cluster
    cluster.close()
    queue = JobQueue.from_url(url)
    queue.flush()
    queue.close()
