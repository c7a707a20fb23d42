"""`artgen serve --worker-process`: the embedded worker as a child process, stopped with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import psutil
import pytest
from apitools import small_job

from artgen.api.routes.health import readiness
from artgen.jobs.hosting import WorkerProcess
from artgen.jobs.schemas import ServiceHealth, WorkerInfo
from artgen.jobs.store import JobStore
from support import free_port

TERMINAL = ("succeeded", "failed", "canceled")


def _start(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "ARTGEN_HOME": str(tmp_path / "home"),
        "ARTGEN_CHECKPOINT_EVERY": "1",
        # Short, so the restart after a SIGKILL requeues the job quickly.
        "ARTGEN_LEASE_SECONDS": "5",
    }
    command = [sys.executable, "-m", "artgen", "serve", "--model", "tiny"]
    command += ["--device", "cpu", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    command += ["--worker-process"]
    log = open(tmp_path / f"server-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(base: str, process: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited early"
        try:
            answer = httpx.get(f"{base}/readyz", timeout=2)
            if answer.status_code == 200:
                return answer.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


def _child(process: subprocess.Popen) -> psutil.Process:
    """The server's one worker child process."""
    children = [c for c in psutil.Process(process.pid).children() if "python" in c.name().lower()]
    # multiprocessing's spawn also starts a resource tracker: the worker is the one that is
    # not running multiprocessing.resource_tracker.
    workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
    assert len(workers) == 1, [c.cmdline() for c in children]
    return workers[0]


def _job(base: str, job_id: str) -> dict:
    return httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5).json()


def _wait_job(base: str, job_id: str, until, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not until(current := _job(base, job_id)):
        assert time.monotonic() < deadline, current
        time.sleep(0.1)
    return current


def _stored(tmp_path: Path, job_id: str):
    store = JobStore(tmp_path / "data")
    try:
        return store.get(job_id)
    finally:
        store.close()


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_readiness_waits_for_the_child_workers_own_registration():
    other = WorkerInfo(id="other", device="cpu", ready=True, alive=True)
    health = ServiceHealth(queue_ok=True, workers=[other], workers_alive=1)
    process = SimpleNamespace(is_alive=lambda: True, exitcode=None, pid=None)
    handle = WorkerProcess(process, "child")  # type: ignore[arg-type]
    service = SimpleNamespace(health=lambda: health, draining=False)
    state = SimpleNamespace(draining=False, service=service, worker=handle)
    # A stale registration (another, SIGKILLed process's) does not make this server ready.
    ready, body = readiness(state)
    assert not ready and "loading" in body["reason"]
    health.workers.append(WorkerInfo(id="child", device="cpu", ready=False, alive=True))
    assert not readiness(state)[0]
    health.workers[-1].ready = True
    assert readiness(state)[0]
    process.is_alive = lambda: False
    ready, body = readiness(state)
    assert not ready and "stopped" in body["reason"]


@pytest.mark.timeout(180)
def test_child_worker_runs_jobs_stops_with_the_server_and_dies_with_it(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    # 1. Ready only with the child's registration; a job runs there; SIGTERM stops the child.
    server = _start(tmp_path, port)
    try:
        body = _wait_ready(base, server)
        child = _child(server)
        mine = [w for w in body["workers"] if "-proc-" in w["id"] and w["ready"] and w["alive"]]
        assert len(mine) == 1, body
        first_id = httpx.post(f"{base}/v1/jobs", json=small_job(), timeout=10).json()["id"]
        done = _wait_job(base, first_id, lambda job: job["status"] in TERMINAL)
        assert done["status"] == "succeeded", done

        long_job = small_job(iterations=400, preview_every=1000)
        job_id = httpx.post(f"{base}/v1/jobs", json=long_job, timeout=10).json()["id"]
        _wait_job(base, job_id, lambda job: job["iteration"] >= 3)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        assert _gone(child.pid, 5), "the worker process outlived the server"
    finally:
        _stop(server)
    store = JobStore(tmp_path / "data")
    try:
        assert store.get(first_id).worker_id == mine[0]["id"]
        job = store.get(job_id)
        assert job is not None and job.status.value == "queued", job
        assert job.checkpoint_iteration is not None and job.checkpoint_iteration >= 3
    finally:
        store.close()

    # 2. The restart resumes from the checkpoint; SIGKILL: the child exits by itself.
    server = _start(tmp_path, port)
    try:
        _wait_ready(base, server)
        child = _child(server)
        resumed_at = job.checkpoint_iteration
        _wait_job(base, job_id, lambda job: job["iteration"] >= resumed_at + 3)
        server.kill()
        server.wait(timeout=10)
        assert _gone(child.pid, 10), "the worker process outlived a SIGKILLed server"
    finally:
        _stop(server)
    first_resume = _stored(tmp_path, job_id)
    assert first_resume.start_iteration == resumed_at, first_resume

    # 3. And the next restart resumes the job again and finishes it.
    server = _start(tmp_path, port)
    try:
        _wait_ready(base, server)
        done = _wait_job(base, job_id, lambda job: job["status"] in TERMINAL, timeout=90)
        assert done["status"] == "succeeded", done
        assert done["iteration"] == 400
        child = _child(server)
    finally:
        _stop(server)
    assert _gone(child.pid, 5)
    assert _stored(tmp_path, job_id).start_iteration > resumed_at


@pytest.mark.timeout(120)
def test_a_child_worker_that_dies_is_restarted_and_its_job_handed_on(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start(tmp_path, port)
    try:
        _wait_ready(base, server)
        child = _child(server)
        long_job = small_job(iterations=150, preview_every=1000)
        job_id = httpx.post(f"{base}/v1/jobs", json=long_job, timeout=10).json()["id"]
        _wait_job(base, job_id, lambda job: job["iteration"] >= 3)
        child.kill()  # the OOM killer, a segfault: the server itself lives on
        _wait_new_child(server, child.pid)
        restarted = _wait_ready(base, server, timeout=60)
        assert any("-proc-" in w["id"] and w["alive"] and w["ready"] for w in restarted["workers"])
        done = _wait_job(base, job_id, lambda job: job["status"] in TERMINAL, timeout=90)
        assert done["status"] == "succeeded", done
        stored = _stored(tmp_path, job_id)
        assert stored.attempt == 2 and stored.start_iteration >= 1, stored
    finally:
        _stop(server)


def _wait_new_child(server: subprocess.Popen, old_pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            live = [
                c
                for c in psutil.Process(server.pid).children()
                if c.pid != old_pid
                and c.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(c.cmdline())
            ]
        except psutil.Error:
            live = []  # a child changed state while we looked
        if live:
            return
        time.sleep(0.1)
    raise AssertionError("no new worker process")
