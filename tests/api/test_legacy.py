"""The seed's four endpoints, called exactly as the seed's client called them."""

from __future__ import annotations

import io
import threading
import time

from apitools import assert_error, png_bytes
from PIL import Image


def test_progress_endpoints_404_before_any_generation(idle_client):
    for path in ("/v1/generate_text2img_progressimg", "/v1/generate_text2img_progressbar"):
        body = assert_error(idle_client.post(path), 404, "not_found")
        assert "no generation has been started yet" in body["error"]["message"]


def test_text2img_and_progress_while_others_poll(worker_client):
    client = worker_client
    results: dict[str, object] = {}

    def generate(name: str, prompt: str) -> None:
        results[name] = client.post(
            "/v1/generate_text2img", params={"prompt": prompt, "width": 32, "height": 32}
        )

    threads = [
        threading.Thread(target=generate, args=("a", "flowering magenta orchids")),
        threading.Thread(target=generate, args=("b", "a rainy day:1 | blur:-0.5")),
    ]
    for thread in threads:
        thread.start()
    # The event loop stays free while generations are awaited: the progress bar answers.
    seen = set()
    deadline = time.monotonic() + 60
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        response = client.post("/v1/generate_text2img_progressbar")
        if response.status_code == 200:
            assert isinstance(response.json(), str)
            seen.add(int(response.json()))
        time.sleep(0.05)
    for thread in threads:
        thread.join(5)
    assert seen, "the progress bar never answered while generating"

    job_ids = set()
    for name in ("a", "b"):
        response = results[name]
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG" and image.size == (32, 32)
        job_ids.add(response.headers["X-Job-Id"])
    assert len(job_ids) == 2

    # After the runs: the last generation's iteration count as the seed's JSON string.
    bar = client.post("/v1/generate_text2img_progressbar")
    assert bar.status_code == 200 and bar.json() == "4"
    assert bar.headers["content-type"].startswith("application/json")

    progress_image = client.post("/v1/generate_text2img_progressimg")
    assert progress_image.status_code == 200
    assert progress_image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(progress_image.content)).format == "JPEG"

    for job_id in job_ids:
        bar = client.post("/v1/generate_text2img_progressbar", params={"job_id": job_id})
        assert bar.json() == "4" and bar.headers["X-Job-Id"] == job_id
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["iterations"] == 4


def test_textimg2img_takes_the_image_field(worker_client):
    response = worker_client.post(
        "/v1/generate_textimg2img",
        params={"prompt": "a blue lake", "width": 32, "height": 32},
        files={"image": ("start.png", png_bytes(color="blue"), "image/png")},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    job = worker_client.get(f"/v1/jobs/{response.headers['X-Job-Id']}").json()
    assert job["status"] == "succeeded"


def test_seed_endpoints_validate_like_the_rest(worker_client):
    client = worker_client
    response = client.post("/v1/generate_text2img", params={"width": 32, "height": 32})
    assert_error(response, 422, "validation_error", "prompt")
    response = client.post(
        "/v1/generate_text2img", params={"prompt": "x", "width": 5, "height": 32}
    )
    assert_error(response, 422, "validation_error", "width")
    response = client.post(
        "/v1/generate_text2img", params={"prompt": "x:1:inf", "width": 32, "height": 32}
    )
    assert_error(response, 422, "validation_error", "prompt")
    response = client.post(
        "/v1/generate_textimg2img",
        params={"prompt": "x", "width": 32, "height": 32},
        files={"image": ("a.png", b"not an image", "image/png")},
    )
    assert_error(response, 415, "unsupported_media_type", "image")
    response = client.post(
        "/v1/generate_text2img_progressbar",
        params={"job_id": "00000000-0000-4000-8000-000000000000"},
    )
    assert_error(response, 404, "not_found")
    assert_error(
        client.post("/v1/generate_text2img_progressimg", params={"job_id": "../x"}),
        422,
        "validation_error",
        "job_id",
    )


def test_seed_endpoints_are_deprecated_in_openapi(worker_client):
    paths = worker_client.get("/openapi.json").json()["paths"]
    for name in (
        "generate_text2img",
        "generate_textimg2img",
        "generate_text2img_progressimg",
        "generate_text2img_progressbar",
    ):
        assert paths[f"/v1/{name}"]["post"]["deprecated"] is True
    assert "deprecated" not in paths["/v1/jobs"]["post"]
