"""Helpers of the browser tests: filling the form, waiting on the page, small jobs through the
API, and fake job records the page is shown without a worker (through page.route)."""

from __future__ import annotations

import json
import time

import httpx

from support import image_bytes

# Small and quick on CPU, but long enough to see several progress and preview events.
SMALL = {"width": 64, "height": 64, "cutn": 4, "preview_every": 2}
RUN_ITERATIONS = 24
LONG_ITERATIONS = 5000
JOB_TIMEOUT_MS = 60_000

# Records every progress value and preview image the page shows, before the page's own script runs.
RECORDER = """
window.__seen = {progress: [], previews: []};
new MutationObserver((records) => {
  for (const record of records) {
    const el = record.target;
    if (el.id === "progress" && record.attributeName === "aria-valuenow") {
      window.__seen.progress.push(Number(el.getAttribute("aria-valuenow")));
    }
    if (el.id === "preview-image" && record.attributeName === "src" && el.getAttribute("src")) {
      window.__seen.previews.push(el.getAttribute("src"));
    }
  }
}).observe(document, {subtree: true, attributes: true,
                      attributeFilter: ["aria-valuenow", "src"]});
"""

# Records the names and values (file names for files) of a FormData the page sends.
FORM_RECORDER = """
const originalFetch = window.fetch;
window.fetch = (url, options) => {
  if (options && options.body instanceof FormData) {
    window.__form = [...options.body.entries()].map(
      ([name, value]) => [name, value instanceof File ? value.name : value]);
  }
  return originalFetch(url, options);
};
"""


def fill_form(page, prompt: str, iterations: int, **fields: object) -> None:
    """Type a prompt and settings into the form (advanced options opened)."""
    page.fill("#prompts", prompt)
    page.fill("#iterations", str(iterations))
    page.click("#advanced > summary")
    for name, value in {**SMALL, **fields}.items():
        page.fill(f"#{name}", str(value))


def wait_chips(page, text: str) -> None:
    """Wait until the prompt chips show the server's reading of `text`."""
    page.wait_for_function(
        "(text) => document.querySelector('#prompt-chips').dataset.text === text", arg=text
    )


def wait_status(page, status: str, timeout: float = JOB_TIMEOUT_MS) -> None:
    """Wait until the result panel shows the job in `status`."""
    page.wait_for_selector(f'#job-status[data-status="{status}"]', timeout=timeout)


def png_bytes(color: tuple[int, int, int], size: int = 64) -> bytes:
    """A small solid-colour PNG."""
    return image_bytes((size, size), "PNG", color)


def submit_job(server: str, prompt: str, iterations: int, **fields: object) -> dict:
    """Submit a small job through the API; return it as answered."""
    params = {"prompt": prompt, "iterations": iterations, **SMALL, **fields}
    answer = httpx.post(f"{server}/v1/jobs", json=params, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()


def cancel_job(server: str, job_id: str) -> None:
    """Cancel a job through the API."""
    answer = httpx.post(f"{server}/v1/jobs/{job_id}/cancel", timeout=10)
    assert answer.status_code == 200, answer.text


def create_job(server: str, prompt: str, iterations: int = 6) -> dict:
    """Submit a small job through the API and wait until it succeeded."""
    job = submit_job(server, prompt, iterations)
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = httpx.get(f"{server}/v1/jobs/{job['id']}", timeout=10).json()
    assert job["status"] == "succeeded", job
    return job


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
