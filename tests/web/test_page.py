"""The web page in a real browser against a real `artgen serve --model tiny`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from page_helpers import (
    FORM_RECORDER,
    JOB_TIMEOUT_MS,
    LONG_ITERATIONS,
    RECORDER,
    RUN_ITERATIONS,
    cancel_job,
    fake_job,
    fill_form,
    png_bytes,
    serve_fake_jobs,
    submit_job,
    wait_chips,
    wait_status,
)

pytestmark = pytest.mark.browser


def test_submit_shows_progress_preview_then_final_image(page, artifacts: Path) -> None:
    page.add_init_script(RECORDER)
    page.goto("/")
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    fill_form(page, "a lighthouse at dusk:1 | fog:-0.5", RUN_ITERATIONS)
    wait_chips(page, "a lighthouse at dusk:1 | fog:-0.5")
    assert page.locator("#prompt-chips li").count() == 2
    page.click("#submit")

    wait_status(page, "succeeded")
    final = page.locator("#final-image")
    final.wait_for(state="visible")
    page.wait_for_function("document.querySelector('#final-image').naturalWidth > 0")

    seen = page.evaluate("window.__seen")
    partial = [value for value in seen["progress"] if 0 < value < 100]
    assert len(set(partial)) >= 2, f"progress bar did not advance in steps: {seen['progress']}"
    assert len(set(seen["previews"])) >= 2, f"preview image did not change: {seen['previews']}"
    assert page.get_attribute("#progress", "aria-valuenow") == "100"
    assert f"{RUN_ITERATIONS} / {RUN_ITERATIONS}" in page.inner_text("#progress-text")

    download = page.locator("#download-png")
    assert download.is_visible()
    job_id = page.get_attribute("#job-view", "data-job-id")
    assert download.get_attribute("href") == f"/v1/jobs/{job_id}/image"
    assert download.get_attribute("download") == f"artgen-{job_id}.png"
    assert page.locator("#download-video").is_hidden()
    seed = page.inner_text("#seed-used")
    assert "Seed used:" in seed
    assert page.inner_text('#job-params dd[data-param="prompts"]').startswith("a lighthouse")
    assert page.locator("#cancel").is_hidden()

    page.screenshot(path=str(artifacts / "web-finished.png"), full_page=True)

    # "Reuse these settings" puts the same prompt and the seed that was used back in the form.
    page.click("#reuse")
    assert page.input_value("#prompts") == "a lighthouse at dusk:1 | fog:-0.5"
    assert page.input_value("#seed") == seed.split(":")[1].split("(")[0].strip()
    assert page.input_value("#iterations") == str(RUN_ITERATIONS)


def test_submit_with_starting_image_and_image_prompt(page, tmp_path: Path) -> None:
    start = tmp_path / "start.png"
    start.write_bytes(png_bytes((200, 40, 40)))
    page.add_init_script(FORM_RECORDER)
    page.goto("/")
    fill_form(page, "a red square", 6, init_weight=0.5)
    page.check("#video")
    page.set_input_files("#init_image", str(start))
    page.wait_for_selector("#init-thumbs img")

    # An image prompt dropped onto its drop zone, as a user dragging a file would.
    page.evaluate(
        """async (bytes) => {
            const file = new File([new Uint8Array(bytes)], "prompt.png", {type: "image/png"});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            const zone = document.querySelector("#prompt-drop");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true,
                                                      cancelable: true}));
        }""",
        list(png_bytes((40, 40, 200))),
    )
    page.wait_for_selector("#prompt-thumbs img")

    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as sent:
        page.click("#submit")
    assert sent.value.headers["content-type"].startswith("multipart/form-data")
    # Playwright does not expose multipart bodies with files, so the page's FormData is read.
    form = page.evaluate("window.__form")
    assert [name for name, _ in form] == ["params", "init_image", "image_prompts"]
    sent_params = json.loads(form[0][1])
    assert sent_params["init_weight"] == 0.5
    assert sent_params["video"] is True
    assert form[1][1] == "start.png"
    assert form[2][1] == "prompt.png"

    wait_status(page, "succeeded")
    page.wait_for_function("document.querySelector('#final-image').naturalWidth > 0")
    assert page.locator("#download-png").is_visible()
    video = page.locator("#download-video")
    assert video.is_visible()
    job_id = page.get_attribute("#job-view", "data-job-id")
    assert video.get_attribute("href") == f"/v1/jobs/{job_id}/video"
    assert video.get_attribute("download") == f"artgen-{job_id}.mp4"


def test_cancel_a_running_job(page) -> None:
    page.goto("/")
    fill_form(page, "an endless spiral", LONG_ITERATIONS, preview_every=1)
    page.click("#submit")
    page.wait_for_function(
        "document.querySelector('#preview-image').getAttribute('src')", timeout=JOB_TIMEOUT_MS
    )
    assert page.inner_text("#image-caption").startswith("Iteration ")
    assert page.locator("#cancel").is_visible()
    page.click("#cancel")
    wait_status(page, "canceled", timeout=20_000)
    assert page.locator("#cancel").is_hidden()
    # A cancel is a neutral note, not an error; the preview goes and its caption with it.
    note = page.locator("#job-note")
    assert note.is_visible() and "Canceled at iteration" in note.inner_text()
    assert page.locator("#job-error").is_hidden()
    assert page.locator("#preview-image").is_hidden()
    assert page.inner_text("#image-caption") == ""
    assert page.locator("#final-image").is_hidden()
    assert page.locator("#download-png").is_hidden()
    assert page.inner_text("#job-status").lower() == "canceled"


def test_a_pending_cancel_shows_canceling(page) -> None:
    """`cancel_requested: true` on a running job (simulated answers: a real worker acts on a
    cancel within 50 ms, too soon to look at) shows "canceling…" in the panel and the gallery."""
    job = fake_job("running", prompts="a slow stop", iteration=4, cancel_requested=True)
    serve_fake_jobs(page, [job])
    page.goto("/")
    item = page.locator(f'#gallery-list li[data-job-id="{job["id"]}"]')
    assert item.locator('[data-testid="gallery-badge"]').inner_text().lower() == "canceling…"
    item.locator(".card-open").click()
    wait_status(page, "running")
    assert page.inner_text("#job-status").lower() == "canceling…"
    assert page.locator("#cancel").is_disabled()
    assert page.inner_text("#cancel") == "Canceling…"


def test_queue_position_while_another_job_runs(page, server: str) -> None:
    running = submit_job(server, "the job in front", LONG_ITERATIONS)
    try:
        page.goto("/")
        fill_form(page, "the job behind", 6)
        page.click("#submit")
        wait_status(page, "queued")
        position = page.locator("#queue-position")
        position.wait_for(state="visible")
        assert "Waiting in the queue" in position.inner_text()
        # The queued job is canceled before it ever starts.
        page.click("#cancel")
        wait_status(page, "canceled", timeout=20_000)
        assert position.is_hidden()
    finally:
        cancel_job(server, running["id"])


def test_validation_errors_show_next_to_their_fields(page, server: str) -> None:
    # Another job is running (in the suite: often an earlier test's, still being canceled); the
    # page may pick it up on load, but a rejected form must add no job of its own.
    running = submit_job(server, "a job already running", LONG_ITERATIONS)
    try:
        page.goto("/")
        fill_form(page, "a || b", 10, width=8)
        page.click("#submit")
        width_error = page.locator("#error-width")
        width_error.wait_for(state="visible")
        assert "16" in width_error.inner_text()
        assert page.get_attribute("#width", "aria-invalid") == "true"
        assert page.locator("#error-prompts").is_visible()
        assert "empty" in page.inner_text("#error-prompts")
        assert page.locator("#error-height").is_hidden()
        assert "fix the marked fields" in page.inner_text("#message")
        # No job was made: the view shows none, or the one that was running already.
        shown = page.get_attribute("#job-view", "data-job-id")
        assert page.locator("#job-view").is_hidden() or shown == running["id"]
        newest = httpx.get(f"{server}/v1/jobs", timeout=10).json()["items"][0]
        assert newest["id"] == running["id"]

        # Fixing the fields clears the errors and the job goes through.
        page.fill("#prompts", "a calm sea")
        page.fill("#width", "64")
        page.click("#submit")
        page.wait_for_function(
            "id => !document.querySelector('#job-view').hidden"
            " && document.querySelector('#job-view').dataset.jobId !== id",
            arg=running["id"],
        )
        assert page.locator("#error-width").is_hidden()
        assert page.locator("#error-prompts").is_hidden()
        submitted = page.get_attribute("#job-view", "data-job-id")
        job = httpx.get(f"{server}/v1/jobs/{submitted}", timeout=10).json()
        assert job["params"]["width"] == 64
        cancel_job(server, submitted)
    finally:
        cancel_job(server, running["id"])


def test_queue_full_message(page) -> None:
    """A 503 queue_full answer (simulated: filling the real queue takes minutes) is explained."""
    body = {"error": {"code": "queue_full", "message": "the queue is full (100 jobs)"}}

    def full(route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        route.fulfill(
            status=503,
            headers={"Retry-After": "7"},
            content_type="application/json",
            body=json.dumps(body),
        )

    page.route("**/v1/jobs", full)
    page.goto("/")
    fill_form(page, "a crowded room", 5)
    page.click("#submit")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "queue is full" in message.inner_text()
    assert "7 s" in message.inner_text()
    assert page.get_attribute("#message", "data-kind") == "error"


def test_failed_job_shows_its_reason(page) -> None:
    """A failed job (simulated answers: a real failure needs a broken worker) says why."""
    job_id = "00000000-0000-4000-8000-000000000001"
    base = f"/v1/jobs/{job_id}"
    job = {
        "id": job_id, "status": "failed", "params": {"prompts": "a doomed picture", "width": 64,
                                                     "height": 64, "iterations": 10},
        "seed": 3, "iteration": 4, "iterations": 10, "progress": 0.4, "eta_seconds": None,
        "loss": 0.9, "queue_position": None, "attempt": 1, "created_at": "2026-11-27T03:20:00Z",
        "started_at": "2026-11-27T03:20:01Z", "finished_at": "2026-11-27T03:20:02Z",
        "error": {"code": "gpu_out_of_memory", "message": "CUDA ran out of memory at 64x64"},
        "urls": {"self": base, "events": f"{base}/events", "preview": None, "image": None,
                 "video": None, "cancel": f"{base}/cancel"},
    }  # fmt: skip

    def answer(route) -> None:
        path = route.request.url.split("://", 1)[1].split("/", 1)[1]
        if path.startswith("v1/jobs?"):
            page_body = {"items": [job], "total": 1, "limit": 12, "offset": 0}
            route.fulfill(content_type="application/json", body=json.dumps(page_body))
        elif path == f"v1/jobs/{job_id}":
            route.fulfill(content_type="application/json", body=json.dumps(job))
        else:
            route.continue_()

    page.route("**/v1/jobs**", answer)
    page.goto("/")
    item = page.locator(f'#gallery-list li[data-job-id="{job_id}"]')
    assert item.get_attribute("data-status") == "failed"
    item.locator(".card-open").click()
    wait_status(page, "failed")
    error = page.inner_text("#job-error")
    assert "gpu_out_of_memory" in error
    assert "CUDA ran out of memory" in error
    assert page.locator("#final-image").is_hidden()
    assert page.locator("#download-png").is_hidden()
    assert page.locator("#reuse").is_visible()


def test_api_key_is_kept_and_used_for_streams_images_and_downloads(
    keyed_page, api_key: str
) -> None:
    """With keys on, the key field is kept and the stream, images and downloads send it."""
    page = keyed_page
    page.goto("/")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "API key" in message.inner_text()

    page.click("#api-key-panel > summary")
    page.fill("#api-key", api_key)
    page.click("#api-key-save")
    assert page.evaluate("localStorage.getItem('artgen.apiKey')") == api_key
    page.reload()
    assert page.input_value("#api-key") == api_key
    page.wait_for_selector("#model option[value='tiny']", state="attached")

    fill_form(page, "a locked door", 12)
    page.click("#submit")
    # With a key the events come through fetch (EventSource cannot send headers).
    wait_status(page, "succeeded", timeout=60_000)
    page.wait_for_function("document.querySelector('#final-image').naturalWidth > 0")
    assert page.get_attribute("#final-image", "src").startswith("blob:")
    assert page.get_attribute("#progress", "aria-valuenow") == "100"

    with page.expect_download() as download_info:
        page.click("#download-png")
    download = download_info.value
    assert download.suggested_filename.endswith(".png")
    with open(download.path(), "rb") as downloaded:
        assert downloaded.read(8) == b"\x89PNG\r\n\x1a\n"

    job_id = page.get_attribute("#job-view", "data-job-id")
    thumb = f"#gallery-list li[data-job-id='{job_id}'] img"
    page.wait_for_function(f'document.querySelector("{thumb}")?.naturalWidth > 0')


def test_the_clip_model_can_be_chosen_and_is_sent(page) -> None:
    page.goto("/")
    page.wait_for_selector("#clip_models option[value='tiny']", state="attached")
    options = page.eval_on_selector_all("#clip_models option", "els => els.map(e => e.value)")
    assert "tiny" in options and "ViT-B-32/openai" in options
    # The server's default critic is preselected.
    assert page.input_value("#clip_models") == "tiny"
    assert "not downloaded" in page.inner_text("#clip_models option[value='ViT-B-32/openai']")
    page.select_option("#clip_models", "random_vit_b_32")
    fill_form(page, "a quiet harbour", 2)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as sent:
        page.click("#submit")
    sent_body = json.loads(sent.value.post_data)
    assert sent_body["clip_models"] == ["random_vit_b_32"]
    # The documented name (`prompts` is only its alias).
    assert sent_body["prompt"] == "a quiet harbour" and "prompts" not in sent_body
    page.wait_for_selector('#job-params dd[data-param="clip_models"]')
    assert "random_vit_b_32" in page.inner_text('#job-params dd[data-param="clip_models"]')
    # Loading and running a ViT-B-32 on the CPU is slow: do not hold up the next tests' jobs.
    job_id = page.get_attribute("#job-view", "data-job-id")
    page.evaluate("id => fetch(`/v1/jobs/${id}/cancel`, {method: 'POST'})", job_id)


def test_prompt_chips_are_the_servers_reading(page) -> None:
    page.goto("/")
    with page.expect_request(lambda r: r.url.endswith("/v1/prompts/parse")):
        page.fill("#prompts", "a:b:c:d | castle: | fog:-0.5 | tower:2:0.3")
    wait_chips(page, "a:b:c:d | castle: | fog:-0.5 | tower:2:0.3")
    chips = page.eval_on_selector_all("#prompt-chips li", "els => els.map(e => e.textContent)")
    assert chips == [
        'toward "a:b:c:d" ×1',
        'toward "castle:" ×1',
        'away from "fog" ×0.5',
        'toward "tower" ×2, stop 0.3',
    ]
    page.fill("#prompts", "a || b")
    wait_chips(page, "a || b")
    error = page.locator('[data-testid="prompt-chip-error"]')
    assert "prompt 2 of 'a || b' is empty" in error.inner_text()


def test_demo_model_suggests_prompts_it_knows(page) -> None:
    """With the server's model `demo` (simulated catalog: the test server runs tiny), the page
    offers shape prompts; choosing one fills the prompt."""
    catalog = {
        "vqgan": [
            {"name": "demo", "available": True, "default": True, "description": "shapes"},
            {"name": "tiny", "available": True, "default": False, "description": "noise"},
        ],
        "clip": [{"name": "demo", "available": True, "default": True, "description": "shapes"}],
    }
    page.route(
        "**/v1/models",
        lambda route: route.fulfill(content_type="application/json", body=json.dumps(catalog)),
    )
    page.goto("/")
    suggestions = page.locator('[data-testid="prompt-suggestions"]')
    suggestions.wait_for(state="visible")
    assert "a green circle on a purple background" in suggestions.inner_text()
    suggestions.locator("button", has_text="a black triangle on a purple background").click()
    assert page.input_value("#prompts") == "a black triangle on a purple background"
    wait_chips(page, "a black triangle on a purple background")
    page.select_option("#model", "tiny")
    assert suggestions.is_hidden()
