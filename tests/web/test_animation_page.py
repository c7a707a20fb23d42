"""The page's animation and restyle modes in a real browser against `artgen serve --model tiny`."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from page_helpers import fake_job, serve_fake_jobs

from artgen.media import write_mp4

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 120_000

# Records every text the progress line shows, before the page's own script runs.
PROGRESS_RECORDER = """
window.__progress = [];
new MutationObserver(() => {
  const text = document.querySelector('#progress-text');
  if (text && text.textContent) window.__progress.push(text.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def choose_animation(page, prompt: str) -> None:
    """The animation mode with a 3-frame 32x32 animation, 2 iterations a frame, cutn 4."""
    page.goto("/")
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    page.click("label[for=kind-animation]")
    page.fill("#prompts", prompt)
    for name, value in {"width": 32, "height": 32, "iterations": 2}.items():
        page.fill(f"#{name}", str(value))
    for name, value in {"frames": 3, "iterations_per_frame": 2, "fps": 4}.items():
        page.fill(f"#{name}", str(value))
    page.fill("#zoom", "0:(1.05), 2:(1.0)")
    page.fill("#angle", "0:(3)")
    page.fill("#prompt_schedule", "2: a stormy sea")
    page.click("#advanced > summary")
    page.fill("#cutn", "4")
    page.fill("#preview_every", "1")


def test_an_animation_shows_its_frames_then_plays_the_video(
    page, server: str, artifacts: Path
) -> None:
    page.add_init_script(PROGRESS_RECORDER)
    choose_animation(page, "a city at night")
    assert page.inner_text("#form-title") == "New animation"
    assert page.locator("#video-block").is_hidden()  # the timelapse is a picture's
    assert "0:(1.02), 60:(1.0)" in page.inner_text("#animation-fields")  # the syntax, shown
    page.click("#submit")

    page.wait_for_selector('#job-status[data-status="succeeded"]', timeout=JOB_TIMEOUT_MS)
    job_id = page.get_attribute("#job-view", "data-job-id")
    job = httpx.get(f"{server}/v1/jobs/{job_id}", timeout=10).json()
    assert (job["kind"], job["frames"]) == ("animation", 3)
    assert job["params"]["prompt_schedule"] == [{"frame": 2, "prompt": "a stormy sea"}]
    assert job["params"]["zoom"] == "0:(1.05), 2:(1.0)"

    seen = page.evaluate("window.__progress")
    frames_seen = {text.split(" ·")[0] for text in seen if re.match(r"Frame \d of 3", text)}
    assert frames_seen, f"the progress line never said which frame: {seen}"
    assert page.inner_text("#progress-text").startswith("Frame 3 of 3")

    video = page.locator("#final-video")
    video.wait_for(state="visible")
    assert video.get_attribute("src") == job["urls"]["video"]
    assert video.get_attribute("poster") == job["urls"]["image"]  # the last frame
    page.wait_for_function("document.querySelector('#final-video').readyState >= 1")
    assert page.evaluate("document.querySelector('#final-video').videoWidth") == 32
    assert page.locator("#final-image").is_hidden()
    assert page.get_attribute("#download-video", "href") == job["urls"]["video"]
    assert page.inner_text("#download-png") == "Download last frame"
    assert "3 frames at 4 fps" in page.inner_text("#image-caption")

    card = page.locator(f'#gallery-list li[data-job-id="{job_id}"]')
    card.wait_for()
    assert card.locator('[data-testid="gallery-video-badge"]').inner_text() == "▶ video"
    page.wait_for_function(
        "id => document.querySelector(`#gallery-list li[data-job-id='${id}'] img.card-thumb`)"
        "?.naturalWidth > 0",
        arg=job_id,
    )
    page.screenshot(path=str(artifacts / "web-animation.png"), full_page=True)

    # "Reuse these settings" brings the animation fields back.
    page.click("label[for=kind-picture]")
    page.click("#reuse")
    assert page.is_checked("#kind-animation")
    assert page.input_value("#frames") == "3"
    assert page.input_value("#prompt_schedule") == "2: a stormy sea"


def test_a_bad_schedule_is_shown_at_its_field(page) -> None:
    choose_animation(page, "a city at night")
    page.fill("#zoom", "0:(1.0), 5:1.2")
    page.click("#submit")
    error = page.locator("#error-zoom")
    error.wait_for(state="visible")
    assert "position 11" in error.inner_text()
    assert page.get_attribute("#zoom", "aria-invalid") == "true"
    assert page.locator("#job-view").is_hidden()


def test_a_restyle_asks_for_its_video_then_restyles_it(page, server: str, tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    moving = (np.stack([np.roll(ramp, 4 * k)[None, :].repeat(32, 0)] * 3, -1) for k in range(3))
    write_mp4(moving, source, 6)
    page.goto("/")
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    page.click("label[for=kind-restyle]")
    assert page.locator("#restyle-fields").is_visible()
    assert page.locator("#init-block").is_hidden()  # a restyle starts from the video's frames
    assert page.locator("#animation-fields").is_hidden()
    page.fill("#prompts", "an oil painting")
    for name, value in {"width": 32, "height": 32, "iterations": 2}.items():
        page.fill(f"#{name}", str(value))
    page.fill("#iterations_per_frame", "2")
    page.fill("#coherence", "0.4")
    page.click("#advanced > summary")
    page.fill("#cutn", "4")
    page.click("#submit")
    error = page.locator("#error-source_video")
    error.wait_for(state="visible")
    assert error.inner_text() == "Choose the video to restyle."
    assert page.locator("#job-view").is_hidden()

    page.set_input_files("#source_video", str(source))
    page.click("#submit")
    page.wait_for_selector('#job-status[data-status="succeeded"]', timeout=JOB_TIMEOUT_MS)
    job_id = page.get_attribute("#job-view", "data-job-id")
    job = httpx.get(f"{server}/v1/jobs/{job_id}", timeout=10).json()
    assert (job["kind"], job["frames"], job["params"]["fps"]) == ("restyle", 3, 6)
    assert job["params"]["coherence"] == 0.4
    page.locator("#final-video").wait_for(state="visible")
    assert "3 frames at 6 fps" in page.inner_text("#image-caption")


def test_a_canceled_animation_plays_the_frames_made_so_far(page) -> None:
    """A canceled animation (a record served to the page: no worker needed) shows its partial
    video and says how many frames it holds."""
    job_id = "00000000-0000-4000-8000-000000000015"
    base = f"/v1/jobs/{job_id}"
    job = fake_job("canceled", id=job_id, prompts="a slow zoom", kind="animation", frames=5)
    job["params"].update(frames=5, iterations_per_frame=4, fps=12)
    job.update(frame=2, frames_done=2, iteration=14, iterations=26)
    job["urls"].update(preview=f"{base}/preview", video=f"{base}/video", frames=f"{base}/frames")
    serve_fake_jobs(page, [job])
    page.goto("/")
    page.locator(f'#gallery-list li[data-job-id="{job_id}"] .card-open').click()
    page.wait_for_selector('#job-status[data-status="canceled"]')
    note = page.inner_text("#job-note")
    assert note == "Canceled after 2 of 5 frames: the video holds the frames made so far."
    video = page.locator("#final-video")
    assert video.is_visible() and video.get_attribute("src") == f"{base}/video"
    assert video.get_attribute("poster") == f"{base}/preview"  # no last frame image: the preview
    assert page.get_attribute("#download-video", "href") == f"{base}/video"
    assert page.locator("#download-png").is_hidden()
    assert page.inner_text("#progress-text").startswith("Frame 3 of 5 · iteration 0 / 4")
