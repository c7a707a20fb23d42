"""The scale-out topology through HTTP: an API app with no worker, two worker processes, Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scaleout_tools import WorkerProcess, spawn_worker

from artgen.api.app import create_app
from artgen.api.routes.legacy import LegacyDefaults
from artgen.config import Settings
from artgen.jobs.queue import JobQueue
from support import RedisProcess, wait_for

pytestmark = pytest.mark.redis

JOB = {"prompts": "a lighthouse in fog", "width": 32, "height": 32, "cutn": 4, "augment": False}


@pytest.fixture
def api(redis_server: RedisProcess, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """`artgen serve --queue redis://... --no-worker` as an app, and its queue URL."""
    url = f"{redis_server.url}?name=scaleout_api_{uuid.uuid4().hex}"
    settings = Settings(
        queue_url=url,
        worker=False,
        model="tiny",
        device="cpu",
        data_dir=tmp_path / "data",
        home=tmp_path / "home",
        lease_seconds=2.0,
        checkpoint_every=4,
    )
    app = create_app(settings)
    app.state.legacy_defaults = LegacyDefaults(iterations=4, cutn=2, preview_every=2)
    with TestClient(app) as client:
        yield client, url
    queue = JobQueue.from_url(url)
    queue.flush()
    queue.close()


def sse_events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Read the job's event stream until `done`."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: ") :])))
                if kind == "done":
                    break
    return events


def job_state(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_api_host_with_two_worker_processes(api: tuple[TestClient, str], tmp_path: Path) -> None:
    client, url = api
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "no worker" in not_ready.json()["reason"]

    workers: list[WorkerProcess] = []
    try:
        workers += [spawn_worker(tmp_path, index, url, tmp_path / "home") for index in (0, 1)]
        ready = wait_for(lambda: (r := client.get("/readyz")).status_code == 200 and r, 60, 0.2)
        body = ready.json()
        assert body["workers_alive"] == 2 and body["workers_busy"] == 0
        assert [w["device"] for w in body["workers"] if w["alive"]] == ["cpu", "cpu"]
        assert "artgen_workers_alive 2.0" in client.get("/metrics").text

        # A job end to end through the API: SSE progress, previews, status and done; files.
        created = client.post("/v1/jobs", json={**JOB, "iterations": 12, "preview_every": 4})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        events = sse_events(client, job_id)
        kinds = [kind for kind, _ in events]
        assert {"progress", "preview", "status"} <= set(kinds) and kinds[-1] == "done"
        assert events[-1][1]["status"] == "succeeded"
        image = client.get(f"/v1/jobs/{job_id}/image")
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
        preview = client.get(f"/v1/jobs/{job_id}/preview")
        assert preview.status_code == 200 and preview.headers["X-Iteration"] == "12"

        # Cancel a job running on a worker process.
        long = client.post("/v1/jobs", json={**JOB, "iterations": 3000}).json()["id"]
        wait_for(lambda: job_state(client, long)["iteration"] >= 4, 60)
        assert client.post(f"/v1/jobs/{long}/cancel").status_code == 200
        canceled = wait_for(lambda: (j := job_state(client, long))["status"] != "running" and j, 10)
        assert canceled["status"] == "canceled" and canceled["iteration"] < 3000

        # The seed's endpoint blocks until a worker process has made the image.
        seed = client.post(
            "/v1/generate_text2img", params={"prompt": "a red apple", "width": 32, "height": 32}
        )
        assert seed.status_code == 200, seed.text
        assert seed.headers["content-type"] == "image/jpeg"
        assert job_state(client, seed.headers["X-Job-Id"])["status"] == "succeeded"
    finally:
        for worker in workers:
            worker.stop()
