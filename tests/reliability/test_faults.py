"""Faults: SIGKILL at random moments, a full disk, generations that raise, hang or exhaust RAM."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from reltools import (
    TERMINAL,
    assert_error,
    data_dir_snapshot,
    image_bytes,
    integrity_check,
    load_benchmark,
    small_job,
    stored_jobs,
    wait_until,
)

import artgen.engine.generate as engine_generate
from artgen.jobs import store as job_store

CRASHES = 4
CRASH_SEED = 20261127
CRASH_JOBS = 3
# Long enough for a normal tiny job on a busy 2-core machine, short enough for a test.
HANG_TIMEOUT_S = 5.0
FILE_FIELDS = ("init_image_file", "preview_file", "image_file", "video_file", "checkpoint_file")


# Crash anywhere


def _submitter(base_url: str, accepted: list[str], stop: threading.Event) -> None:
    """Keep submitting small jobs (one every ~0.4 s) so some kills land mid-request."""
    while not stop.is_set():
        try:
            response = httpx.post(f"{base_url}/v1/jobs", json=small_job(iterations=6), timeout=5)
            if response.status_code == 202:
                accepted.append(response.json()["id"])
        except httpx.HTTPError:
            pass  # the server is down or was killed mid-request: the client may retry
        stop.wait(0.4)


@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """K kills during several jobs (and submissions); every accepted job ends, files are whole."""
    load = load_benchmark()
    env = {"ARTGEN_CHECKPOINT_EVERY": "2", "ARTGEN_MAX_ATTEMPTS": str(CRASHES + 4)}
    server = load.ServerProcess(tmp_path / "data", tmp_path / "server.log", env=env)
    rng = random.Random(CRASH_SEED)
    accepted: list[str] = []
    resumed_attempts = 0
    try:
        server.start()
        for _ in range(CRASH_JOBS):
            body = small_job(iterations=30, cutn=4, preview_every=3)
            accepted.append(load.submit(server.base_url, body)["id"])
        for crash in range(CRASHES):
            stop = threading.Event()
            submitter = threading.Thread(
                target=_submitter, args=(server.base_url, accepted, stop), daemon=True
            )
            submitter.start()
            time.sleep(rng.uniform(0.2, 2.5))
            running = _running(server.base_url)
            server.kill()
            stop.set()
            submitter.join(10)
            print(f"kill {crash + 1}/{CRASHES}: running {running}; {len(accepted)} accepted")
            server.start()
        jobs = {}
        for job_id in accepted:
            jobs[job_id] = load.wait_job(server.base_url, job_id, timeout=120)
        # A kill mid-submit can leave a job stored but never acknowledged; recovery enqueues it
        # and it runs like the others: wait for every stored job, so none is running when the
        # server stops (a drained job goes back to `queued`).
        _wait_no_active_jobs(server.base_url, timeout=120)
        resumed_attempts = sum(1 for job in jobs.values() if (job.get("attempt") or 1) > 1)
    finally:
        server.stop()

    records = {record["id"]: record for record in stored_jobs(server.data_dir / "jobs.sqlite3")}
    from_checkpoint = sum(1 for record in records.values() if record.get("start_iteration"))
    print(
        f"{len(accepted)} accepted jobs, {len(records)} records, {resumed_attempts} ran more "
        f"than one attempt, {from_checkpoint} resumed from a checkpoint"
    )
    assert set(accepted) <= set(records), "an accepted job was lost"
    for record in records.values():
        assert record["status"] in TERMINAL, record
        # Generous attempts: a kill is never the job's fault, so every job must succeed.
        assert record["status"] == "succeeded", record
        _assert_files_whole(server.data_dir / "jobs" / record["id"], record)
    assert not [path for path in data_dir_snapshot(server.data_dir) if path.endswith(".tmp")]
    assert {path.split("/")[0] for path in data_dir_snapshot(server.data_dir)} <= set(records)
    for database in ("jobs.sqlite3", "queue.sqlite3"):
        assert integrity_check(server.data_dir / database) == "ok"


def _wait_no_active_jobs(base_url: str, timeout: float) -> None:
    """Poll until the server holds no queued or running job (acknowledged or not)."""

    def active() -> dict[str, Any]:
        totals = {}
        for status in ("queued", "running"):
            page = httpx.get(f"{base_url}/v1/jobs?status={status}&limit=1", timeout=30).json()
            totals[status] = page["total"]
        return totals

    wait_until(active, lambda totals: not any(totals.values()), timeout=timeout)


def _running(base_url: str) -> list[str]:
    """'id-prefix@iteration' of the running jobs (the kill lands just after this request)."""
    try:
        page = httpx.get(f"{base_url}/v1/jobs?status=running", timeout=5).json()
    except httpx.HTTPError:
        return ["?"]
    return [f"{job['id'][:6]}@{job['iteration']}" for job in page["items"]]


def _assert_files_whole(job_dir: Path, record: dict[str, Any]) -> None:
    """Every file the record names exists and decodes; the final image has the job's size."""
    names = [record.get(name) for name in FILE_FIELDS] + record.get("image_prompt_files", [])
    for name in filter(None, names):
        path = job_dir / name
        assert path.is_file(), f"{record['id']} points at missing {name}"
        if name.endswith(".png"):
            with Image.open(path) as image:
                image.load()
        elif name.endswith(".pt"):
            torch.load(path, map_location="cpu", weights_only=True)
    if record["status"] == "succeeded":
        with Image.open(job_dir / record["image_file"]) as image:
            assert image.size == (record["params"]["width"], record["params"]["height"])


# Disk full


class DiskFull:
    """Injects ENOSPC into the store's atomic writes for the file names in `names`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: set[str] = set()
        self.refused: list[str] = []
        original = job_store.write_file_atomic

        def write(path: Path, data: bytes) -> None:
            if "*" in self.names or path.name in self.names:
                self.refused.append(path.name)
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            original(path, data)

        monkeypatch.setattr(job_store, "write_file_atomic", write)


def _ready(client: TestClient) -> None:
    wait_until(lambda: {"ready": client.get("/readyz").status_code == 200}, lambda r: r["ready"])


def _run(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=small_job(**overrides))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    return wait_until(lambda: client.get(f"/v1/jobs/{job_id}").json(), timeout=60)


def test_disk_full_fails_the_job_with_disk_full_and_keeps_earlier_data(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app_factory(worker=True, checkpoint_every=2)
    _ready(client)
    disk = DiskFull(monkeypatch)
    earlier = _run(client)
    assert earlier["status"] == "succeeded"
    earlier_png = client.get(f"/v1/jobs/{earlier['id']}/image").content

    # The disk fills up: every write (previews, checkpoints, the final image) fails.
    disk.names = {"*"}
    failed = _run(client, iterations=6)
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "disk_full", failed
    assert "final.png" in disk.refused and "checkpoint.pt" in disk.refused
    assert_error(client.get(f"/v1/jobs/{failed['id']}/image"), 409, "not_finished")
    # A new upload cannot be stored either: a clear 507, not a 500.
    response = client.post(
        "/v1/jobs",
        data={"params": json.dumps(small_job())},
        files={"init_image": ("x.png", image_bytes(), "image/png")},
    )
    assert_error(response, 507, "disk_full")
    assert int(response.headers["Retry-After"]) > 0

    # Earlier data intact, the service keeps serving, and once space is back jobs run again.
    assert client.get(f"/v1/jobs/{earlier['id']}/image").content == earlier_png
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    disk.names = set()
    assert _run(client)["status"] == "succeeded"
    snapshot = data_dir_snapshot(Path(client.app.state.settings.data_dir))
    assert not [path for path in snapshot if path.endswith(".tmp")]


def test_disk_full_on_a_checkpoint_only_is_survived(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint is insurance, not output: losing one to ENOSPC leaves the job running."""
    client = app_factory(worker=True, checkpoint_every=2)
    _ready(client)
    disk = DiskFull(monkeypatch)
    disk.names = {"checkpoint.pt"}
    job = _run(client, iterations=8)
    assert "checkpoint.pt" in disk.refused
    assert job["status"] == "succeeded", job
    assert client.get(f"/v1/jobs/{job['id']}/image").status_code == 200


# Generations that raise, hang or run out of memory


def _fault_by_prompt(
    monkeypatch: pytest.MonkeyPatch, faults: dict[str, Callable[[], None]]
) -> None:
    """Generation.step runs `faults[word]` when the job's prompt starts with that word."""
    original = engine_generate.Generation.step

    def step(self: Any) -> Any:
        for word, fault in faults.items():
            if self.params.prompts.startswith(word):
                fault()
        return original(self)

    monkeypatch.setattr(engine_generate.Generation, "step", step)


def _raise(exc: BaseException) -> Callable[[], None]:
    def fault() -> None:
        raise exc

    return fault


@pytest.mark.parametrize(
    ("word", "code"),
    [
        ("raise", "internal_error"),
        ("hang", "timeout"),
        ("cpu-oom", "out_of_memory"),
        ("gpu-oom", "gpu_out_of_memory"),
    ],
)
def test_a_failing_generation_fails_alone_and_the_next_job_succeeds(
    app_factory: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    word: str,
    code: str,
) -> None:
    faults = {
        "raise": _raise(RuntimeError("secret internal detail")),
        # Slow steps: the job runs past its timeout and is stopped at an iteration boundary.
        "hang": lambda: time.sleep(1.0),
        "cpu-oom": _raise(MemoryError()),
        "gpu-oom": _raise(torch.cuda.OutOfMemoryError("CUDA out of memory")),
    }
    _fault_by_prompt(monkeypatch, faults)
    client = app_factory(worker=True, job_timeout_seconds=HANG_TIMEOUT_S)
    _ready(client)
    failed = _run(client, prompts=f"{word} a castle", iterations=30)
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == code, failed
    assert failed["error"]["message"] and "secret internal detail" not in json.dumps(failed)
    if word == "hang":
        assert 0 < failed["iteration"] < 30, failed  # stopped past its timeout, before step 30
    # The worker recovered: the next job on the same server succeeds.
    follower = _run(client, prompts="a calm lake")
    assert follower["status"] == "succeeded", follower
    with Image.open(io.BytesIO(client.get(f"/v1/jobs/{follower['id']}/image").content)) as image:
        assert image.size == (32, 32)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root and mount rights; skipped elsewhere); unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)]
    try:
        mounted = subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def _fill(disk: Path) -> Path:
    """Take every free byte of the file system; the filler's path."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        handle.write(b"\0" * (stats.f_bavail * stats.f_frsize))
    return filler


@pytest.mark.timeout(180)
def test_a_really_full_disk_refuses_new_work_keeps_serving_and_recovers(
    app_factory: Callable[..., TestClient], small_disk: Path
) -> None:
    """Data dir and embedded queue on a tmpfs that fills up while a job runs."""
    client = app_factory(
        worker=True, data_dir=small_disk / "data", checkpoint_every=2, lease_seconds=3.0
    )
    _ready(client)
    earlier = _run(client)
    earlier_png = client.get(f"/v1/jobs/{earlier['id']}/image").content
    running = client.post("/v1/jobs", json=small_job(iterations=80, preview_every=1)).json()
    wait_until(lambda: client.get(f"/v1/jobs/{running['id']}").json(), lambda j: j["iteration"] > 3)
    filler = _fill(small_disk)

    # Full: new work is refused with a clear code, reads keep working.
    response = client.post("/v1/jobs", json=small_job())
    assert_error(response, 507, "disk_full")
    assert client.get(f"/v1/jobs/{earlier['id']}/image").content == earlier_png
    assert client.get(f"/v1/jobs/{running['id']}").status_code == 200
    assert client.get("/healthz").status_code == 200
    time.sleep(3)

    # Space comes back: the interrupted job ends (resumed from its checkpoint), new jobs run.
    filler.unlink()
    job = wait_until(lambda: client.get(f"/v1/jobs/{running['id']}").json(), timeout=120)
    print(
        f"\njob interrupted by the full disk: {job['status']} {job['error']}, attempt "
        f"{job['attempt']}, iteration {job['iteration']}"
    )
    assert job["status"] in TERMINAL, job
    if job["status"] == "failed":
        assert job["error"]["code"] in {"disk_full", "worker_lost"}, job
    assert _run(client)["status"] == "succeeded"
    data_dir = small_disk / "data"
    assert not [path for path in data_dir_snapshot(data_dir) if path.endswith(".tmp")]
    for record in stored_jobs(data_dir / "jobs.sqlite3"):
        _assert_files_whole(data_dir / "jobs" / record["id"], record)
    assert integrity_check(data_dir / "jobs.sqlite3") == "ok"


def test_a_submission_refused_for_a_full_disk_leaves_no_files(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by this test, fixed in jobs: _create removes the input files it wrote."""
    client = app_factory()
    disk = DiskFull(monkeypatch)
    disk.names = {"prompt_0.png"}  # the init image fits, the image prompt does not
    files = [
        ("init_image", ("a.png", image_bytes(), "image/png")),
        ("image_prompts", ("b.png", image_bytes(), "image/png")),
    ]
    response = client.post("/v1/jobs", data={"params": json.dumps(small_job())}, files=files)
    assert_error(response, 507, "disk_full")
    assert client.get("/v1/jobs").json()["total"] == 0
    assert data_dir_snapshot(Path(client.app.state.settings.data_dir)) == set()


def test_a_step_that_never_returns_is_timed_out(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by this test, fixed in jobs: the collector fails an attempt past timeout + lease."""
    release = threading.Event()
    _fault_by_prompt(monkeypatch, {"stuck": lambda: release.wait(30)})
    client = app_factory(worker=True, job_timeout_seconds=1.0, lease_seconds=2.0)
    _ready(client)
    job_id = client.post("/v1/jobs", json=small_job(prompts="stuck forever")).json()["id"]
    try:
        job = wait_until(
            lambda: client.get(f"/v1/jobs/{job_id}").json(),
            lambda job: job["status"] in TERMINAL,
            timeout=6,
        )
        assert job["error"]["code"] == "timeout"
    finally:
        release.set()  # let the worker thread go so the app can shut down
