"""Probes, metrics, the model list and draining."""

from __future__ import annotations

import time
from typing import Any

import pytest
from apitools import assert_error, small_job, wait_for, wait_ready
from prometheus_client import CollectorRegistry, generate_latest

from artgen.api.app import begin_draining, create_app
from artgen.api.metrics import JobMetrics


def test_healthz_and_readyz_without_a_worker(idle_client):
    assert idle_client.get("/healthz").json() == {"status": "ok"}
    ready = idle_client.get("/readyz")
    assert ready.status_code == 503
    assert "no worker" in ready.json()["reason"]


def test_readyz_with_the_embedded_worker_and_metrics(worker_client):
    ready = worker_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["workers_alive"] == 1 and body["queue_ok"]

    job_id = worker_client.post("/v1/jobs", json=small_job()).json()["id"]
    assert wait_for(worker_client, job_id)["status"] == "succeeded"
    deadline = time.monotonic() + 10
    while True:
        text = worker_client.get("/metrics").text
        if 'artgen_jobs_finished_total{status="succeeded"}' in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name in (
        "artgen_queue_depth",
        "artgen_jobs_running",
        "artgen_workers_alive 1.0",
        "artgen_workers_busy",
        "artgen_iterations_per_second",
        'artgen_job_duration_seconds_count{status="succeeded"}',
        'artgen_jobs_finished_total{status="succeeded"}',
        "artgen_jobs_submitted_total",
        "http_requests_total",
    ):
        assert name in text, name


def test_failures_are_counted_by_reason():
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)

    class FakeService:
        def __init__(self, jobs):
            self.jobs = jobs

        def list(self, status=None, **kwargs):
            jobs = [job for job in self.jobs if job.status == status]
            return jobs, len(jobs)

    from artgen.jobs.schemas import Job, JobError, JobStatus

    def failed(code):
        error = JobError(code=code, message="m")
        job_id = f"{code}-{time.monotonic_ns()}"
        return Job(id=job_id, params={}, iterations=1, status=JobStatus.failed, error=error)

    service = FakeService([failed("gpu_out_of_memory")])
    metrics.poll(service)  # primes: jobs already finished at startup are not counted
    service.jobs += [failed("gpu_out_of_memory"), failed("timeout")]
    metrics.poll(service)
    metrics.poll(service)  # counted once
    text = generate_latest(registry).decode()
    assert 'artgen_job_failures_total{reason="gpu_out_of_memory"} 1.0' in text
    assert 'artgen_job_failures_total{reason="timeout"} 1.0' in text


def test_many_apps_do_not_collide_on_metrics(tmp_path):
    from support import make_settings

    for index in range(3):
        app = create_app(make_settings(tmp_path / str(index), worker=False))
        assert app.state.metrics is not None


def test_draining_refuses_new_jobs_and_readiness(idle_client):
    job_id = idle_client.post("/v1/jobs", json=small_job()).json()["id"]
    begin_draining(idle_client.app)
    response = idle_client.post("/v1/jobs", json=small_job())
    assert_error(response, 503, "shutting_down")
    assert response.headers["Retry-After"]
    ready = idle_client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert idle_client.get("/healthz").status_code == 200
    # Reading still works while draining.
    assert idle_client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_models_list(idle_client):
    models = idle_client.get("/v1/models").json()
    vqgan = {entry["name"]: entry for entry in models["vqgan"]}
    clip = {entry["name"]: entry for entry in models["clip"]}
    assert vqgan["tiny"]["available"] and vqgan["tiny"]["default"]
    assert clip["tiny"]["default"]
    assert "wikiart_16384" in vqgan and not vqgan["wikiart_16384"]["default"]
    assert all(isinstance(entry["description"], str) for entry in models["vqgan"])


def test_readyz_waits_for_its_own_embedded_worker_not_a_stale_registration():
    """After a SIGKILL restart the dead worker's registration still looks alive for a lease."""
    from types import SimpleNamespace

    from artgen.api.routes.health import readiness
    from artgen.jobs.schemas import ServiceHealth, WorkerInfo

    stale = WorkerInfo(id="dead-process-worker", device="cpu", model="tiny", clip_models=["tiny"])
    stale.alive, stale.ready = True, True
    service = SimpleNamespace(health=lambda: ServiceHealth(queue_ok=True, workers=[stale]))
    info = SimpleNamespace(ready=False)
    loading = SimpleNamespace(alive=True, ready=lambda health: info.ready)  # a HostedWorker
    state = SimpleNamespace(draining=False, service=service, worker=loading)
    ready, body = readiness(state)
    assert not ready and "still loading" in body["reason"]
    info.ready = True
    assert readiness(state)[0]
    loading.alive = False
    ready, body = readiness(state)
    assert not ready and "stopped" in body["reason"]


def test_a_crashed_worker_thread_is_restarted_and_its_job_handed_on_at_once(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artgen.jobs.job_run import JobRun

    real_after_step = JobRun.after_step
    crashes = []

    def crash_once_at_iteration_5(self: JobRun, result: Any) -> None:
        if result.iteration == 5 and not crashes:
            crashes.append(self.job_id)
            raise SystemExit("the worker thread dies here")  # not caught by the task runner
        real_after_step(self, result)

    monkeypatch.setattr(JobRun, "after_step", crash_once_at_iteration_5)
    client = client_factory(worker=True, checkpoint_every=2, lease_seconds=300.0)
    wait_ready(client)
    first = client.app.state.worker
    job_id = client.post("/v1/jobs", json=small_job(iterations=20)).json()["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.1)
    assert crashes == [job_id]
    assert client.app.state.worker is not first and client.app.state.worker.alive
    # Handed on at once, not after the 300 s lease, and resumed from a checkpoint.
    stored = client.app.state.service.get(job_id)
    assert stored.attempt == 2 and stored.start_iteration == 4, stored
    # The dead worker's heartbeats stopped with it.
    assert first.worker.info.stopped


def test_the_supervisor_survives_a_failed_restart_and_tries_again(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artgen.jobs.collector import ReportCollector
    from artgen.jobs.job_run import JobRun

    real_after_step, real_worker_gone = JobRun.after_step, ReportCollector.worker_gone
    calls = []

    def crash_at_iteration_3(self: JobRun, result: Any) -> None:
        if result.iteration == 3 and self.attempt == 1:
            raise SystemExit("the worker thread dies here")
        real_after_step(self, result)

    def queue_down_once(self: ReportCollector, worker_id: str) -> None:
        calls.append(worker_id)
        if len(calls) == 1:
            raise ConnectionError("the queue is unreachable for a moment")
        real_worker_gone(self, worker_id)

    monkeypatch.setattr(JobRun, "after_step", crash_at_iteration_3)
    monkeypatch.setattr(ReportCollector, "worker_gone", queue_down_once)
    client = client_factory(worker=True, checkpoint_every=2, lease_seconds=300.0)
    wait_ready(client)
    job_id = client.post("/v1/jobs", json=small_job(iterations=8)).json()["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.1)
    assert len(calls) == 2 and client.app.state.worker.alive
