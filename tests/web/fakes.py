"""Job records the page is shown without a worker (answered through Playwright's page.route)."""

from __future__ import annotations

import json


def fake_job(status: str, **fields: object) -> dict:
    """A job record as GET /v1/jobs/{id} answers it."""
    job_id = str(fields.pop("id", "00000000-0000-4000-8000-000000000002"))
    base = f"/v1/jobs/{job_id}"
    params = {"prompts": fields.pop("prompts", "a picture"), "width": 64, "height": 64,
              "iterations": 10}  # fmt: skip
    job = {
        "id": job_id, "status": status, "params": params, "seed": 3, "iteration": 0,
        "iterations": 10, "progress": 0.0, "eta_seconds": None, "loss": None,
        "queue_position": None, "attempt": 1, "created_at": "2026-11-27T03:20:00Z",
        "started_at": None, "finished_at": None, "error": None, "cancel_requested": False,
        "urls": {"self": base, "events": f"{base}/events", "preview": None, "image": None,
                 "video": None, "cancel": f"{base}/cancel"},
    }  # fmt: skip
    job.update(fields)
    return job


def serve_fake_jobs(page, jobs: list[dict]) -> None:
    """Answer the page's job list and job reads with `jobs` (events: a stream that stays open)."""
    by_id = {job["id"]: job for job in jobs}

    def answer(route) -> None:
        path = route.request.url.split("://", 1)[1].split("/", 1)[1]
        if path.startswith("v1/jobs?"):
            body = {"items": jobs, "total": len(jobs), "limit": 12, "offset": 0}
            route.fulfill(content_type="application/json", body=json.dumps(body))
        elif path.removeprefix("v1/jobs/") in by_id:
            route.fulfill(content_type="application/json", body=json.dumps(by_id[path[8:]]))
        elif path.endswith("/events"):
            route.fulfill(content_type="text/event-stream", body=": quiet\n\n")
        else:
            route.continue_()

    page.route("**/v1/jobs**", answer)
