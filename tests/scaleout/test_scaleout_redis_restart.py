"""A private redis-server killed and restarted empty while worker processes run jobs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from scaleout_tools import Cluster, stored_keys, tiny_request

from artgen.jobs.schemas import JobStatus
from support import REDIS_SERVER, RedisProcess, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test alone (it gets killed), on a free port."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH (install redis-server to run these)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisProcess(directory)
    server.start()
    yield server
    server.kill()


def test_redis_restart_loses_no_job(
    own_redis: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="artgen.jobs")
    cluster = Cluster(tmp_path, f"{own_redis.url}?name=restart_{uuid.uuid4().hex}")
    try:
        workers = cluster.spawn(), cluster.spawn()
        cluster.ready(*workers)
        running = [cluster.service.submit(tiny_request(iterations=150, seed=i))[0] for i in (1, 2)]
        waiting = [cluster.service.submit(tiny_request(iterations=8, seed=i))[0] for i in (3, 4)]
        for job in running:
            wait_for(lambda job=job: (cluster.job(job.id).checkpoint_iteration or 0) >= 4, 60)

        own_redis.kill()
        down = wait_for(lambda: (h := cluster.service.health()).queue_ok is False and h, 10)
        assert not down.ready and down.queue_error
        time.sleep(2.0)
        assert not cluster.service.health().ready
        own_redis.start()  # empty: queued tasks, reports, cancel flags, registrations are gone

        for job in running + waiting:
            done = wait_for(lambda job=job: (j := cluster.job(job.id)).status.terminal and j, 90)
            assert done.status == JobStatus.succeeded, done.error
            assert done.iteration == done.iterations
        # Both workers registered again, each under its own entry.
        health = wait_for(lambda: (h := cluster.service.health()).workers_alive == 2 and h, 10)
        assert health.ready and len({info.id for info in health.workers if info.alive}) == 2
        assert all(worker.popen.poll() is None for worker in workers)
        # Backoff: a few retries per process during the outage, not a busy loop.
        for worker in workers:
            assert worker.log().count("unreachable") < 30, worker.log()
        collector_retries = [r for r in caplog.records if r.name == "artgen.jobs.collector"]
        assert len(collector_retries) < 30
    finally:
        cluster.close()


def test_a_delete_during_a_redis_outage_stops_the_job_once_redis_is_back(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    """The DELETE answers while Redis is down; Redis comes back empty (the job's control key is
    gone, the worker would run on): the audit tells the worker, and nothing of the job stays."""
    cluster = Cluster(tmp_path, f"{own_redis.url}?name=outage_{uuid.uuid4().hex}")
    try:
        worker = cluster.spawn()
        cluster.ready(worker)
        job, _ = cluster.service.submit(tiny_request(iterations=5000))
        wait_for(lambda: cluster.job(job.id).iteration >= 4, 60)
        own_redis.kill()
        wait_for(lambda: cluster.service.health().queue_ok is False, 10)
        assert cluster.service.delete(job.id)
        assert cluster.service.get(job.id) is None
        own_redis.start()

        ended = wait_for(
            lambda: [run for run in worker.runs() if run.job_id == job.id and run.ended], 60
        )
        assert ended[0].status == "canceled"
        wait_for(lambda: not cluster.service.store.queue_cleanups(), 60)
        assert stored_keys(cluster.service.queue, job.id) == []
        assert worker.popen.poll() is None
    finally:
        cluster.close()
