"""Cancel on a remote worker process; a worker that cannot load its model takes no jobs."""

from __future__ import annotations

import signal
import time

import pytest
from scaleout_tools import Cluster, tiny_request

from artgen.jobs.schemas import JobStatus
from support import wait_for

pytestmark = pytest.mark.redis


def test_cancel_remote_job_and_worker_without_model(cluster: Cluster) -> None:
    good = cluster.spawn()
    # `artgen worker` itself, with a catalog model whose weights are not in ARTGEN_HOME.
    broken = cluster.spawn(cli=True, model="wikiart_16384")
    cluster.ready(good)
    failing = wait_for(lambda: (i := cluster.health_of(broken)) and i.model_error and i, 60)
    assert failing.alive and not failing.ready and not failing.busy
    assert "wikiart_16384" in failing.model_error and failing.device == "cpu"
    health = cluster.service.health()
    assert health.ready and health.workers_alive == 2 and health.workers_busy == 0

    job, _ = cluster.service.submit(tiny_request(iterations=2000))
    behind, _ = cluster.service.submit(tiny_request(iterations=8))
    running = wait_for(lambda: (j := cluster.job(job.id)).iteration >= 8 and j, 60)
    assert good.owns(running.worker_id)
    busy = cluster.service.health()
    assert busy.workers_busy == 1 and cluster.health_of(good).job_id == job.id
    # The broken worker leaves the second job alone although it is idle.
    assert cluster.job(behind.id).status == JobStatus.queued
    assert cluster.service.queue.pending_count() == 1

    asked = time.time()
    cluster.service.cancel(job.id)
    done = wait_for(lambda: (j := cluster.job(job.id)).status.terminal and j, 10)
    assert done.status == JobStatus.canceled and done.iteration < 2000
    [run] = [run for run in good.runs() if run.job_id == job.id]
    assert run.status == "canceled" and run.ended is not None
    assert run.ended - asked < 1.0  # the worker checks the flag every iteration (~0.1 s here)

    after = wait_for(lambda: (j := cluster.job(behind.id)).status.terminal and j, 60)
    assert after.status == JobStatus.succeeded and good.owns(after.worker_id)
    assert "started" not in broken.log()
    broken.signal(signal.SIGTERM)
    assert broken.popen.wait(30) == 1  # a worker that never loaded its models exits non-zero
