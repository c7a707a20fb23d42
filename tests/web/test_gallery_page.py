"""The page's gallery in a real browser against a real `artgen serve --model tiny`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from page_helpers import (
    JOB_TIMEOUT_MS,
    LONG_ITERATIONS,
    cancel_job,
    create_job,
    submit_job,
    wait_status,
)

pytestmark = pytest.mark.browser


def test_a_running_jobs_gallery_card_shows_its_latest_preview(
    page, server: str, artifacts: Path
) -> None:
    job = submit_job(server, "a card that paints itself", LONG_ITERATIONS, preview_every=2)
    try:
        page.goto("/")
        # The page follows the running job; its card takes every preview the stream announces.
        thumb = f'#gallery-list li[data-job-id="{job["id"]}"] [data-testid="gallery-thumb"]'
        versions = set()
        for _ in range(2):
            handle = page.wait_for_function(
                """([selector, seen]) => {
                    const img = document.querySelector(selector);
                    return img && img.tagName === "IMG" && img.naturalWidth > 0 &&
                        img.complete && !seen.includes(img.dataset.version) && img.dataset.version;
                }""",
                arg=[thumb, sorted(versions)],
                timeout=JOB_TIMEOUT_MS,
            )
            versions.add(handle.json_value())
        assert len(versions) == 2
        # Not a black tile: the thumbnail has the preview's own pixels.
        assert page.evaluate(
            """(selector) => {
                const img = document.querySelector(selector);
                const canvas = document.createElement("canvas");
                canvas.width = img.naturalWidth;
                canvas.height = img.naturalHeight;
                const context = canvas.getContext("2d");
                context.drawImage(img, 0, 0);
                const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
                let total = 0;
                for (let i = 0; i < data.length; i += 4) {
                    total += data[i] + data[i + 1] + data[i + 2];
                }
                return total > 0;
            }""",
            thumb,
        )
        badge = f'#gallery-list li[data-job-id="{job["id"]}"] [data-testid="gallery-badge"]'
        assert page.inner_text(badge).lower() == "running"
        for width, height in ((1280, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=str(artifacts / f"web-running-{width}.png"), full_page=True)
    finally:
        cancel_job(server, job["id"])


def test_gallery_pages(page, server: str) -> None:
    # Thirteen jobs, canceled at once: more than one page of twelve, newest first.
    jobs = [submit_job(server, f"page test {number}", 1) for number in range(13)]
    for job in jobs:
        cancel_job(server, job["id"])
    page.goto("/")
    page.wait_for_selector(f'#gallery-list li[data-job-id="{jobs[-1]["id"]}"]')
    items = page.locator("#gallery-list li")
    assert items.count() == 12
    assert items.first.get_attribute("data-job-id") == jobs[-1]["id"]
    assert page.locator("#gallery-newer").is_disabled()
    page.click("#gallery-older")
    page.wait_for_selector(f'#gallery-list li[data-job-id="{jobs[0]["id"]}"]')
    assert items.first.get_attribute("data-job-id") == jobs[0]["id"]
    assert page.locator("#gallery-newer").is_enabled()
    assert "Page 2 of" in page.inner_text("#gallery-page")
    page.click("#gallery-newer")
    page.wait_for_selector(f'#gallery-list li[data-job-id="{jobs[-1]["id"]}"]')


def test_gallery_lists_opens_and_deletes_a_job(page, server: str) -> None:
    job = create_job(server, "a gallery fox")
    page.goto("/")
    item = page.locator(f'#gallery-list li[data-job-id="{job["id"]}"]')
    item.wait_for()
    assert page.locator("#gallery-list li").first.get_attribute("data-job-id") == job["id"]
    assert item.get_attribute("data-status") == "succeeded"
    assert item.locator('[data-testid="gallery-prompt"]').inner_text() == "a gallery fox"
    page.wait_for_function(
        "(id) => document.querySelector(`li[data-job-id='${id}'] img`).naturalWidth > 0",
        arg=job["id"],
    )

    item.locator(".card-open").click()
    wait_status(page, "succeeded")
    assert page.get_attribute("#job-view", "data-job-id") == job["id"]
    page.wait_for_function("document.querySelector('#final-image').naturalWidth > 0")
    assert page.inner_text('#job-params dd[data-param="prompts"]') == "a gallery fox"
    assert page.inner_text('#job-params dd[data-param="seed"]') == str(job["seed"])

    delete = item.locator('[data-testid="gallery-delete"]')
    delete.click()
    assert delete.inner_text() == "Really delete?"
    delete.click()
    item.wait_for(state="detached")
    assert page.locator("#job-view").is_hidden()
    assert httpx.get(f"{server}/v1/jobs/{job['id']}", timeout=10).status_code == 404


def test_phone_width_has_no_horizontal_overflow(page, server: str, artifacts: Path) -> None:
    job = create_job(server, "a tiny phone picture of a very long prompt " * 3)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    page.click("#advanced > summary")
    page.locator(f'#gallery-list li[data-job-id="{job["id"]}"] .card-open').click()
    wait_status(page, "succeeded")
    page.wait_for_function("document.querySelector('#final-image').naturalWidth > 0")
    widths = page.evaluate(
        "({scroll: document.documentElement.scrollWidth,"
        " client: document.documentElement.clientWidth})"
    )
    assert widths["scroll"] <= widths["client"] <= 390, widths
    box = page.locator("#final-image").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.locator("#submit").bounding_box()["width"] > 300
    page.screenshot(path=str(artifacts / "web-phone.png"), full_page=True)


def test_gallery_cards_and_header_lay_out_alike(page, server: str, artifacts: Path) -> None:
    done = create_job(server, "a finished card")
    stopped = [submit_job(server, f"a stopped card {n}", 1) for n in range(3)]
    for job in stopped:
        cancel_job(server, job["id"])
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/")
        page.wait_for_selector(f'#gallery-list li[data-job-id="{stopped[-1]["id"]}"]')
        page.wait_for_selector(f'#gallery-list li[data-job-id="{done["id"]}"]')
        # One card's Delete armed ("Really delete?"): it must sit like the others.
        page.locator('#gallery-list li [data-testid="gallery-delete"]').first.click()
        boxes = page.evaluate(
            """() => [...document.querySelectorAll("#gallery-list li")].map((card) => {
                const box = (el) => el.getBoundingClientRect();
                const c = box(card), b = box(card.querySelector(".badge")),
                      t = box(card.querySelector("[data-testid=gallery-thumb]")),
                      d = box(card.querySelector("[data-testid=gallery-delete]"));
                return {badgeLeft: b.left - c.left, badgeTop: b.top - c.top,
                        badgeInThumb: b.bottom <= t.bottom && b.right <= t.right,
                        deleteRight: c.right - d.right, deleteBottom: c.bottom - d.bottom,
                        deleteHeight: d.height};
            })"""
        )
        assert len(boxes) >= 4
        assert all(box["badgeInThumb"] for box in boxes), boxes
        # The same place on every card, armed Delete included ("Really delete?" never wraps).
        for key in ("badgeLeft", "badgeTop", "deleteRight", "deleteBottom", "deleteHeight"):
            values = [round(box[key]) for box in boxes]
            assert max(values) - min(values) <= 1, (key, width, values)

        header = page.locator(".topbar").bounding_box()
        toggle = page.locator("#api-key-panel > summary").bounding_box()
        padding = page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('.topbar')).paddingRight)"
        )
        # The API-key toggle ends at the header's right edge (inside its padding).
        right_gap = header["x"] + header["width"] - padding - (toggle["x"] + toggle["width"])
        assert abs(right_gap) <= 1, (width, right_gap)
        page.screenshot(path=str(artifacts / f"web-gallery-{width}.png"), full_page=True)
