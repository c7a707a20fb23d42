"""A real `serve()` process: SIGTERM drains, checkpoints the running job and exits; it resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from apitools import small_job

from artgen.jobs.store import JobStore
from support import free_port

SERVER = """
import sys
from pathlib import Path
from artgen.api.server import serve
from artgen.config import Settings
data_dir, home, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
serve(Settings(model="tiny", device="cpu", data_dir=data_dir, home=home, port=port,
               checkpoint_every=1, lease_seconds=30.0))
"""


def _start(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / f"server-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "data"), str(tmp_path / "home"), str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(base: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited early"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server never became ready")


def _job(base: str, job_id: str) -> dict:
    return httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5).json()


@pytest.mark.timeout(240)
def test_sigterm_checkpoints_the_running_job_and_a_restart_resumes_it(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(tmp_path, port)
    try:
        _wait_ready(base, process)
        body = small_job(iterations=8, preview_every=100)
        job_id = httpx.post(f"{base}/v1/jobs", json=body, timeout=10).json()["id"]
        deadline = time.monotonic() + 90
        while _job(base, job_id)["iteration"] < 2:
            assert time.monotonic() < deadline, _job(base, job_id)
            time.sleep(0.1)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # The job was handed back with a checkpoint: not left `running`, not restarted from 0.
    store = JobStore(tmp_path / "data")
    try:
        job = store.get(job_id)
        assert job is not None
        assert job.status.value in ("queued", "running", "succeeded"), job.status
        if job.status.value != "succeeded":
            assert job.checkpoint_iteration is not None and job.checkpoint_iteration >= 1
    finally:
        store.close()

    process = _start(tmp_path, port)
    try:
        _wait_ready(base, process)
        deadline = time.monotonic() + 120
        while (current := _job(base, job_id))["status"] not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline, current
            time.sleep(0.2)
        assert current["status"] == "succeeded", json.dumps(current)
        assert current["iteration"] == 8
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
