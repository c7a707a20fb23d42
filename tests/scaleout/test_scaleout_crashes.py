"""Worker processes frozen and killed mid-job: the job moves on from its checkpoint, stale
attempts are fenced off, and a job whose workers keep dying fails with worker_lost."""

from __future__ import annotations

import signal
import time

import pytest
from scaleout_tools import Cluster, WorkerProcess, tiny_request

from artgen.jobs.queue import Keys
from artgen.jobs.schemas import Job, JobStatus
from support import wait_for

pytestmark = pytest.mark.redis


def running_on(cluster: Cluster, job_id: str, attempt: int, worker: WorkerProcess) -> Job | None:
    """The job once `worker` runs `attempt` of it and has checkpointed since it started."""
    job = cluster.job(job_id)
    if job.attempt != attempt or job.status != JobStatus.running or not worker.owns(job.worker_id):
        return None
    started = job.start_iteration
    checkpointed = job.checkpoint_iteration or 0
    return job if started is not None and checkpointed > started else None


def requeued_as(cluster: Cluster, job_id: str, attempt: int) -> Job | None:
    """The job once it was handed to `attempt`."""
    job = cluster.job(job_id)
    return job if job.attempt >= attempt else None


def test_frozen_then_killed_workers_hand_the_job_on(cluster: Cluster) -> None:
    lease = cluster.settings.lease_seconds
    workers = cluster.spawn(), cluster.spawn()
    cluster.ready(*workers)
    job, _ = cluster.service.submit(tiny_request(iterations=150, preview_every=4))
    first = wait_for(lambda: (j := cluster.job(job.id)).start_iteration is not None and j, 30)
    [x] = [worker for worker in workers if worker.owns(first.worker_id)]
    [y] = [worker for worker in workers if worker is not x]
    at_freeze = wait_for(lambda: running_on(cluster, job.id, 1, x), 30)
    assert at_freeze.start_iteration == 0

    # 1. Freeze X (a stalled host): after the lease the job goes to Y, from X's checkpoint.
    x.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    handed = wait_for(lambda: requeued_as(cluster, job.id, 2), lease + 5)
    assert time.monotonic() - frozen_at >= lease - 1.0  # not before X's lease could run out
    second = wait_for(lambda: running_on(cluster, job.id, 2, y), 30)
    assert second.start_iteration == handed.checkpoint_iteration > 0
    assert second.start_iteration >= at_freeze.checkpoint_iteration

    # 2. X wakes up: its late reports of attempt 1, and forged ones, change nothing.
    x.signal(signal.SIGCONT)
    queue = cluster.service.queue
    queue.put(Keys.progress(job.id, 1), {"attempt": 1, "iteration": 149, "loss": 123.0, "time": 0})
    queue.put(Keys.result(job.id, 2), {"attempt": 1, "status": "failed", "error": {}})
    wait_for(lambda: "attempt 1 ended: superseded" in x.log(), 20)
    time.sleep(4 * 0.2)  # a few collector passes over the forged values
    current = cluster.job(job.id)
    assert current.status == JobStatus.running and current.attempt == 2
    assert y.owns(current.worker_id) and current.loss != 123.0

    # 3. Kill Y mid-job: X (alive again) resumes attempt 3 from Y's latest checkpoint.
    wait_for(lambda: (cluster.job(job.id).checkpoint_iteration or 0) > second.start_iteration, 30)
    y.signal(signal.SIGKILL)
    third = wait_for(lambda: running_on(cluster, job.id, 3, x), lease + 30)
    assert third.start_iteration > second.start_iteration
    done = wait_for(lambda: (j := cluster.job(job.id)).status.terminal and j, 60)
    assert done.status == JobStatus.succeeded, done.error
    assert done.attempt == 3 and done.iteration == 150 and cluster.service.image_file(job.id)
    progress = [e.data for e in cluster.service.events(job.id) if e.type == "progress"]
    assert all(data["loss"] != 123.0 for data in progress)
    # Once the first checkpoint existed, progress never went back behind it.
    saved = at_freeze.checkpoint_iteration
    first = next(index for index, data in enumerate(progress) if data["iteration"] >= saved)
    assert min(data["iteration"] for data in progress[first:]) >= saved > 0
    runs = [(run.attempt, run.status) for run in x.runs() if run.job_id == job.id]
    assert runs == [(1, "superseded"), (3, "succeeded")]

    # 4. A job whose every attempt loses its worker fails with worker_lost (here 2 attempts).
    cluster.settings.max_attempts = 2
    doomed, _ = cluster.service.submit(tiny_request(iterations=400))
    wait_for(lambda: running_on(cluster, doomed.id, 1, x), 30)
    x.signal(signal.SIGSTOP)
    wait_for(lambda: requeued_as(cluster, doomed.id, 2), lease + 5)
    x.signal(signal.SIGCONT)  # it drops attempt 1 and, the only worker left, takes attempt 2
    wait_for(lambda: running_on(cluster, doomed.id, 2, x), 30)
    x.signal(signal.SIGKILL)
    lost = wait_for(lambda: (j := cluster.job(doomed.id)).status.terminal and j, lease + 5)
    assert lost.status == JobStatus.failed and lost.error.code == "worker_lost"
    assert lost.attempt == 2
    # The killed worker's heartbeat goes stale by its own clock, not the reaper's: that can be a
    # collector pass after the job was failed (seen under load), so wait for it, within a lease.
    wait_for(lambda: not cluster.service.health().workers_alive, lease + 5)
