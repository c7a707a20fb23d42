"""artgen.api.schemas: the job's public JSON, its URLs, and the webhook body."""

from __future__ import annotations

import json

from artgen.api.schemas import JobPublic, public_event_data, public_json
from artgen.jobs.schemas import Job, JobStatus


def test_public_json_shape() -> None:
    job = Job(id="7b0c6a3e-0000-4000-8000-000000000000", params={"prompts": "x"}, iterations=100)
    job.iteration, job.status = 42, JobStatus.running
    job.preview_file = "preview.png"
    data = JobPublic.from_job(job, queue_position=3).model_dump(mode="json")
    assert set(data) == {
        "id", "status", "params", "seed", "iteration", "iterations", "progress", "eta_seconds",
        "loss", "queue_position", "attempt", "created_at", "started_at", "finished_at", "error",
        "cancel_requested", "urls", "kind", "frame", "frames", "frames_done",
        "frame_iteration", "frame_iterations",
    }  # fmt: skip
    assert data["kind"] == "picture" and data["frames"] is None and data["frames_done"] == 0
    assert data["progress"] == 0.42 and data["queue_position"] is None
    assert data["urls"] == {
        "self": f"/v1/jobs/{job.id}",
        "events": f"/v1/jobs/{job.id}/events",
        "preview": f"/v1/jobs/{job.id}/preview",
        "image": None,
        "video": None,
        "cancel": f"/v1/jobs/{job.id}/cancel",
        "frames": None,
    }
    assert JobStatus.canceled.terminal and not JobStatus.running.terminal


def test_cancel_requested_shows_only_while_the_job_is_active() -> None:
    job = Job(id="7b0c6a3e-0000-4000-8000-000000000000", params={"prompts": "x"}, iterations=9)
    job.status, job.cancel_requested = JobStatus.running, True
    assert JobPublic.from_job(job).cancel_requested is True
    job.status = JobStatus.canceled
    assert JobPublic.from_job(job).cancel_requested is False


def test_the_webhook_body_is_the_public_json_without_the_webhook() -> None:
    job = Job(id="7b0c6a3e-0000-4000-8000-000000000000", params={"prompts": "x"}, iterations=9)
    job.webhook, job.webhook_events = "https://example.org/hook", ["completed"]
    body = json.loads(public_json(job))
    assert body == JobPublic.from_job(job).model_dump(mode="json")
    assert "webhook" not in body and body["urls"]["self"] == f"/v1/jobs/{job.id}"


def test_the_sse_data_gets_its_urls_from_the_api() -> None:
    job_id = "7b0c6a3e-0000-4000-8000-000000000000"
    base = f"/v1/jobs/{job_id}"
    done = public_event_data(job_id, "done", {"status": "succeeded", "image": True, "video": True})
    assert done == {
        "status": "succeeded",
        "image_url": f"{base}/image",
        "video_url": f"{base}/video",
    }
    canceled = public_event_data(job_id, "done", {"status": "canceled"})
    assert canceled == {"status": "canceled"}
    assert public_event_data(job_id, "preview", {"iteration": 4}) == {
        "iteration": 4,
        "url": f"{base}/preview",
    }
    frame = public_event_data(job_id, "frame", {"frame": 2, "frames": 5})
    assert frame["url"] == f"{base}/frames/2"
    assert public_event_data(job_id, "progress", {"iteration": 1}) == {"iteration": 1}
