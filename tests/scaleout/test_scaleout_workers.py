"""Two worker processes share a Redis queue: parallel, exactly once, in order, never forked."""

from __future__ import annotations

import signal

import pytest
from scaleout_tools import Cluster, tiny_request

from artgen.jobs.schemas import JobStatus
from support import wait_for

pytestmark = pytest.mark.redis


def test_two_workers_share_four_jobs(cluster: Cluster) -> None:
    first, second = cluster.spawn(), cluster.spawn()
    cluster.ready(first, second)
    health = cluster.service.health()
    assert health.ready and health.workers_alive == 2
    assert {info.device for info in health.workers} == {"cpu"}

    # Unequal lengths, so the worker that finishes first shows which job the queue hands out next.
    lengths = [12, 40, 12, 12]
    jobs = [
        cluster.service.submit(tiny_request(iterations=n, seed=i))[0] for i, n in enumerate(lengths)
    ]
    busy = wait_for(lambda: (h := cluster.service.health()).workers_busy == 2 and h, 60)
    assert {info.job_id for info in busy.workers} == {jobs[0].id, jobs[1].id}
    done = [
        wait_for(lambda job=job: (j := cluster.job(job.id)).status.terminal and j, 90)
        for job in jobs
    ]

    assert [job.status for job in done] == [JobStatus.succeeded] * 4, [j.error for j in done]
    assert all(job.attempt == 1 and job.iteration == job.iterations for job in done)
    runs = {worker.pid: worker.runs() for worker in (first, second)}
    assert all(runs.values()), f"a worker took no job: {runs}"
    # Each job ran exactly once, to the end, on the worker its record names.
    started = sorted((run.job_id, worker) for worker, found in runs.items() for run in found)
    assert [job_id for job_id, _ in started] == sorted(job.id for job in jobs)
    for job in done:
        [owner] = [worker for worker in (first, second) if worker.owns(job.worker_id)]
        [run] = [run for run in runs[owner.pid] if run.job_id == job.id]
        assert run.status == "succeeded" and run.ended is not None
    # One job at a time per worker.
    for found in runs.values():
        for before, after in zip(found, found[1:], strict=False):
            assert before.ended is not None and before.ended <= after.started
    # Queue order: start times follow submit order (two workers may take theirs in the same
    # instant, hence a little slack); the short jobs 3 and 4 start 12 iterations apart.
    start = {run.job_id: run.started for found in runs.values() for run in found}
    times = [start[job.id] for job in jobs]
    for index, later in enumerate(times):
        assert all(later >= earlier - 0.3 for earlier in times[:index]), times
    assert times[3] > times[2]

    # One process per device, never forked after torch was imported.
    assert not any(cluster.fork_log(index).exists() for index in range(2))
    first.signal(signal.SIGTERM)
    assert first.popen.wait(30) == 0
    assert "start method after run_worker: spawn" in first.log()
