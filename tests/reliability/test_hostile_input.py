"""Hostile input: schema fuzzing, hostile uploads, path/id traversal, keys and limits, prompts."""

from __future__ import annotations

import collections
import io
import json
import os
import struct
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image
from reltools import (
    assert_error,
    data_dir_snapshot,
    image_bytes,
    small_job,
    wait_until,
)

from artgen.api.app import create_app
from artgen.api.routes import legacy
from artgen.api.uploads import body_limit
from support import make_settings

FUZZ_KEY = "fuzz-key-0123456789"
# The seed's generate endpoints block until a generation ends: only invalid input is fuzzed there.
BLOCKING_OPERATIONS = {"/v1/generate_text2img", "/v1/generate_textimg2img"}
# /readyz answers 503 by design on a server without a worker.
NOT_READY_OPERATIONS = {"/readyz"}
FUZZ_EXAMPLES_PER_MODE = 40
MIN_FUZZ_CASES = 800


def test_schema_fuzzing_gives_no_5xx_and_schema_conformant_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every operation, positive and negative cases: no 5xx, status/headers/body match OpenAPI."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.python import asgi

    conformance = [
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    # A generate call that slipped past validation would wait for a job no worker runs: bound it.
    monkeypatch.setattr(legacy, "WAIT_MARGIN_SECONDS", 0.0)
    settings_ = make_settings(
        tmp_path, worker=False, queue_limit=10**9, api_keys=[FUZZ_KEY], job_timeout_seconds=1.0
    )
    app = create_app(settings_)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: collections.Counter[int] = collections.Counter()
    counts: dict[str, int] = {}
    started = time.monotonic()
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            checks = list(conformance)
            if operation.path not in NOT_READY_OPERATIONS:
                checks.append(not_a_server_error)
            modes = [schemathesis.GenerationMode.NEGATIVE]
            if operation.path not in BLOCKING_OPERATIONS:
                modes.insert(0, schemathesis.GenerationMode.POSITIVE)
            for mode in modes:
                label = f"{operation.method.upper()} {operation.path} {mode.value}"
                counts[label] = _fuzz(operation, mode, checks, statuses)
    finally:
        asgi.shutdown_lifespans()
    total = sum(counts.values())
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {total} cases in {elapsed:.1f} s; statuses {dict(statuses)}")
    assert total >= MIN_FUZZ_CASES, counts
    # The fuzzing reached the real behaviour: jobs were accepted, ids looked up, input refused.
    assert statuses[202] > 0 and statuses[404] > 0 and statuses[422] > 0, statuses
    assert not any(status >= 500 and status != 503 for status in statuses), statuses


def _fuzz(operation: Any, mode: Any, checks: list[Any], statuses: collections.Counter) -> int:
    """Run one operation's cases in one generation mode; the number of cases sent."""
    count = 0
    per_operation: collections.Counter[int] = collections.Counter()
    # Every case carries the valid key, so negative cases reach validation instead of a 401.
    headers = {"X-API-Key": FUZZ_KEY}

    @settings(
        max_examples=FUZZ_EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
    def check(case: Any) -> None:
        nonlocal count
        count += 1
        response = case.call_and_validate(checks=checks, timeout=10)
        statuses[response.status_code] += 1
        per_operation[response.status_code] += 1

    try:
        check()
    except Unsatisfiable:
        # An operation without parameters has no invalid variant to generate.
        assert not mode.is_positive
    print(operation.method.upper(), operation.path, mode.value, dict(per_operation))
    return count


# Uploads


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid tiny-file PNG whose header claims width x height grey pixels (all zero)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # Compress row by row so building the bomb does not itself need the full raw size.
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def header_only_bomb_png() -> bytes:
    """A 60-byte PNG claiming 100000 x 100000 pixels (the pixels are never there)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")


def corrupt(data: bytes) -> bytes:
    """Keep the header, scramble the compressed pixel data."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xA5 for b in data[middle : middle + 64]) + data[middle + 64 :]


def hostile_images() -> dict[str, tuple[bytes, int, str]]:
    """name -> (file bytes, expected status, expected error code)."""
    png = image_bytes((64, 64), "PNG")
    jpeg = image_bytes((64, 64), "JPEG")
    return {
        "bomb_header_only": (header_only_bomb_png(), 422, "invalid_image"),
        "bomb_5000x5000_zeros": (bomb_png(5000, 5000), 422, "invalid_image"),
        "truncated_png": (png[: len(png) // 2], 422, "invalid_image"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], 422, "invalid_image"),
        "corrupt_png": (corrupt(png), 422, "invalid_image"),
        "empty_file": (b"", 422, "invalid_image"),
        "text_named_png": (b"hello, I am not an image\n" * 10, 415, "unsupported_media_type"),
        "gif": (image_bytes((16, 16), "GIF"), 415, "unsupported_media_type"),
        "bmp": (image_bytes((16, 16), "BMP"), 415, "unsupported_media_type"),
        "tiff": (image_bytes((16, 16), "TIFF"), 415, "unsupported_media_type"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, "unsupported_media_type"),
    }


def _stored(client: TestClient, data_dir: Path) -> tuple[int, set[str]]:
    """(job count, files under the jobs dir): what a refused request must leave unchanged."""
    return client.get("/v1/jobs").json()["total"], data_dir_snapshot(data_dir)


@pytest.fixture
def upload_client(app_factory: Any) -> TestClient:
    """A server without a worker and a small upload limit (256 KiB)."""
    return app_factory(max_upload_bytes=256 * 1024)


def _data_dir(client: TestClient) -> Path:
    return Path(client.app.state.settings.data_dir)


@pytest.mark.parametrize("name", sorted(hostile_images()))
def test_hostile_image_gets_its_4xx_and_nothing_is_stored(
    upload_client: TestClient, name: str
) -> None:
    data, status, code = hostile_images()[name]
    before = _stored(upload_client, _data_dir(upload_client))
    params = json.dumps(small_job())
    uploads = [
        ("/v1/jobs", {"init_image": ("x.png", data, "image/png")}, {"params": params}),
        ("/v1/jobs", {"image_prompts": ("x.png", data, "image/png")}, {"params": params}),
        (
            "/v1/generate_textimg2img?prompt=a%20cat&width=32&height=32",
            {"image": ("x.png", data, "image/png")},
            {},
        ),
    ]
    for url, files, form in uploads:
        response = upload_client.post(url, files=files, data=form)
        body = assert_error(response, status, code)
        assert body["error"].get("field") in {"init_image", "image_prompts.0", "image"}, body
    assert _stored(upload_client, _data_dir(upload_client)) == before


def test_multipart_with_thousands_of_fields_is_400_and_nothing_is_stored(
    upload_client: TestClient,
) -> None:
    before = _stored(upload_client, _data_dir(upload_client))
    fields = [(f"field{index}", "x") for index in range(5000)]
    fields.append(("params", json.dumps(small_job())))
    for url, name in (
        ("/v1/jobs", "init_image"),
        ("/v1/generate_textimg2img?prompt=cat&width=32&height=32", "image"),
    ):
        files = [(name, ("x.png", image_bytes(), "image/png"))]
        response = upload_client.post(url, data=dict(fields), files=files)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] in {"invalid_multipart", "bad_request"}
    many_files = [("image_prompts", (f"{i}.png", image_bytes(), "image/png")) for i in range(50)]
    response = upload_client.post(
        "/v1/jobs", data={"params": json.dumps(small_job())}, files=many_files
    )
    assert_error(response, 400, "invalid_multipart")
    assert _stored(upload_client, _data_dir(upload_client)) == before


def _multipart_stream(total_bytes: int, chunk: int = 64 * 1024) -> tuple[bytes, Any]:
    """(boundary, async chunk generator) of a multipart body with one huge init_image."""
    boundary = b"reliability-boundary"
    head = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="params"\r\n\r\n'
        + json.dumps(small_job()).encode()
        + b"\r\n--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="init_image"; filename="big.png"\r\n'
        + b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n"
    )

    def chunks() -> Any:
        yield head
        sent = len(head)
        block = b"\x00" * chunk
        while sent < total_bytes:
            yield block
            sent += len(block)
        yield b"\r\n--" + boundary + b"--\r\n"

    return boundary, chunks


def _call_asgi(app: Any, headers: list[tuple[bytes, bytes]], chunks: Any) -> tuple[int, int]:
    """POST /v1/jobs straight into the ASGI app; (status, body bytes the app pulled)."""
    pulled = 0
    status = 0
    source = chunks()

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        try:
            body = next(source)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    return status, pulled


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_far_over_the_limit_is_413_with_bounded_memory(
    upload_client: TestClient, declared: bool
) -> None:
    """64 MiB against a 1.25 MiB cap: 413, reading stops at the cap, memory stays small."""
    app = upload_client.app
    limit = body_limit(app.state.settings.max_upload_bytes)
    total = 64 * 1024 * 1024
    boundary, chunks = _multipart_stream(total)
    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
    if declared:
        headers.append((b"content-length", str(total + 2048).encode()))
    before = _stored(upload_client, _data_dir(upload_client))
    tracemalloc.start()
    try:
        status, pulled = _call_asgi(app, headers, chunks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n413 after pulling {pulled} of {total} bytes; tracemalloc peak {peak / 2**20:.1f} MiB")
    assert status == 413
    assert pulled <= limit + 128 * 1024
    if declared:
        assert pulled == 0  # refused from the Content-Length alone
    assert peak < 4 * limit, peak
    assert _stored(upload_client, _data_dir(upload_client)) == before


# Paths and ids

TRAVERSALS = [
    "..%2F..%2F..%2Fsecret.txt",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "%252e%252e%252fsecret.txt",
    "..%5C..%5Csecret.txt",
    "%2Fetc%2Fpasswd",
    "%00",
    "..%00",
    "job%00.png",
    "....%2F%2F....%2F%2Fsecret.txt",
    "12345678-1234-1234-1234-1234567890ab%2F..%2F..%2Fsecret.txt",
    "not-a-uuid",
    "-1",
    "%20",
    "x" * 300,
]
JOB_ROUTES = [
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/preview"),
    ("GET", "/v1/jobs/{id}/image"),
    ("GET", "/v1/jobs/{id}/video"),
    ("GET", "/v1/jobs/{id}/events"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("DELETE", "/v1/jobs/{id}"),
]
QUERY_ROUTES = [
    ("POST", "/v1/generate_text2img?job_id={id}"),
    ("POST", "/v1/generate_text2img_progressimg?job_id={id}"),
    ("POST", "/v1/generate_text2img_progressbar?job_id={id}"),
    ("GET", "/v1/jobs?status={id}"),
    ("GET", "/v1/jobs?limit={id}"),
    ("GET", "/v1/jobs?offset={id}"),
    ("GET", "/v1/jobs/{job}/preview?format={id}"),
    ("GET", "/v1/jobs/{job}/image?format={id}"),
    ("GET", "/v1/jobs/{job}/events?last_event_id={id}"),
]


class OpenRecorder:
    """An audit hook that records every file the process opens while `active`."""

    def __init__(self) -> None:
        self.active = False
        self.opened: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
            self.opened.append(os.fsdecode(args[0]))


def test_traversal_ids_get_404_or_422_and_nothing_outside_the_data_dir_is_read(
    upload_client: TestClient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the data dir's neighbour")
    job = upload_client.post("/v1/jobs", json=small_job()).json()["id"]
    recorder = OpenRecorder()
    answers: collections.Counter[int] = collections.Counter()
    recorder.active = True
    try:
        for method, template in JOB_ROUTES + QUERY_ROUTES:
            for attempt in TRAVERSALS:
                url = template.format(id=attempt, job=job)
                response = upload_client.request(method, url, headers={"Last-Event-ID": attempt})
                answers[response.status_code] += 1
                assert response.status_code in (404, 405, 422), (url, response.text)
                assert "secret" not in response.text or "no route" in response.text
                assert "root:" not in response.text
    finally:
        recorder.active = False
    print(f"\n{sum(answers.values())} traversal requests: {dict(answers)}")
    data_dir = _data_dir(upload_client).resolve()
    outside = [
        path
        for path in recorder.opened
        if Path(path).is_absolute()
        and not Path(path).resolve().is_relative_to(data_dir)
        and not path.endswith((".py", ".pyc", ".so"))
    ]
    assert str(secret) not in recorder.opened
    assert not [path for path in outside if "passwd" in path or "secret" in path], outside
    # The job is untouched by all of it.
    assert upload_client.get(f"/v1/jobs/{job}").json()["status"] == "queued"


def test_static_files_do_not_escape_the_web_dir(upload_client: TestClient) -> None:
    for url in (
        "/..%2F..%2Fconfig.py",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/..%2F..%2Fapi%2Fapp.py",
        "/..%5c..%5capi%5capp.py",
        "/%00",
    ):
        response = upload_client.get(url)
        assert response.status_code in (400, 404), (url, response.status_code)
        assert "def " not in response.text and "root:" not in response.text


# Keys and limits

KEY_A, KEY_B = "key-alice-0123456789", "key-bob-0123456789"


def test_one_key_cannot_read_cancel_or_delete_another_keys_jobs(app_factory: Any) -> None:
    client = app_factory(api_keys=[KEY_A, KEY_B])
    alice, bob = {"X-API-Key": KEY_A}, {"X-API-Key": KEY_B}
    job = client.post("/v1/jobs", json=small_job(), headers=alice).json()["id"]
    for method, template in JOB_ROUTES:
        response = client.request(method, template.format(id=job), headers=bob)
        assert_error(response, 404, "not_found")
    for url in (
        f"/v1/generate_text2img_progressbar?job_id={job}",
        f"/v1/generate_text2img_progressimg?job_id={job}",
        f"/v1/generate_text2img?job_id={job}",
    ):
        assert_error(client.post(url, headers=bob), 404, "not_found")
    # Bob's "current generation" is not Alice's.
    assert_error(client.post("/v1/generate_text2img_progressbar", headers=bob), 404, "not_found")
    assert client.get("/v1/jobs", headers=bob).json()["total"] == 0
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY_A + " "}):
        assert_error(client.get(f"/v1/jobs/{job}", headers=headers), 401, "unauthorized")
    # Still Alice's, untouched.
    mine = client.get(f"/v1/jobs/{job}", headers=alice).json()
    assert mine["status"] == "queued"
    assert client.get("/healthz").status_code == 200


def test_per_key_rate_limit_answers_429_with_retry_after(app_factory: Any) -> None:
    client = app_factory(api_keys=[KEY_A, KEY_B], rate_limit_per_minute=3)
    alice = {"X-API-Key": KEY_A}
    for _ in range(3):
        assert client.post("/v1/jobs", json=small_job(), headers=alice).status_code == 202
    response = client.post("/v1/jobs", json=small_job(), headers=alice)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # The seed's generate counts against the same key.
    response = client.post("/v1/generate_text2img?prompt=cat&width=32&height=32", headers=alice)
    assert_error(response, 429, "rate_limited")
    # Another key has its own budget.
    bob = {"X-API-Key": KEY_B}
    assert client.post("/v1/jobs", json=small_job(), headers=bob).status_code == 202


def test_per_key_active_job_limit_answers_429_until_one_ends(app_factory: Any) -> None:
    client = app_factory(api_keys=[KEY_A, KEY_B], max_active_jobs_per_key=2)
    alice = {"X-API-Key": KEY_A}
    jobs = [client.post("/v1/jobs", json=small_job(), headers=alice).json()["id"] for _ in "ab"]
    response = client.post("/v1/jobs", json=small_job(), headers=alice)
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert client.post("/v1/jobs", json=small_job(), headers={"X-API-Key": KEY_B}).is_success
    client.post(f"/v1/jobs/{jobs[0]}/cancel", headers=alice)
    assert client.post("/v1/jobs", json=small_job(), headers=alice).status_code == 202


# Prompts


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        ("x" * 2001, "prompts"),
        ("a cat\x00", "prompts"),
        ("bell\x07 and escape \x1b[31m", "prompts"),
        ("C1 control \x85 here", "prompts"),
        ("", "prompts"),
        ("   \n\t ", "prompts"),
    ],
    ids=["too-long", "nul", "bell-escape", "c1", "empty", "blank"],
)
def test_bad_prompts_get_a_clear_422(upload_client: TestClient, prompt: str, field: str) -> None:
    before = _stored(upload_client, _data_dir(upload_client))
    body = assert_error(
        upload_client.post("/v1/jobs", json=small_job(prompts=prompt)), 422, "validation_error"
    )
    assert body["error"]["field"] == field
    assert before == _stored(upload_client, _data_dir(upload_client))


def test_lone_surrogate_escape_is_422_not_500(upload_client: TestClient) -> None:
    """JSON allows "\\ud800" escapes, which no UTF-8 store can keep."""
    for raw in ('"a \\ud800 b"', '"\\udfff"'):
        text = json.dumps(small_job()).replace('"a red apple:1 | blur:-0.5"', raw)
        response = upload_client.post(
            "/v1/jobs", content=text, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 422, "validation_error", field="prompts")
    text = json.dumps(small_job(noise_prompts="1:1")).replace('"1:1"', '"\\ud83d:1"')
    response = upload_client.post(
        "/v1/jobs", content=text, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_error", field="noise_prompts")


def test_unicode_prompts_run_correctly(app_factory: Any) -> None:
    """Right-to-left, emoji, combining marks, zero-width joiners: stored intact, jobs succeed."""
    client = app_factory(worker=True)
    wait_until(lambda: {"ready": client.get("/readyz").status_code == 200}, lambda r: r["ready"])
    prompts = [
        "قطة على حصيرة:1 | שלום:-0.5",
        "👩‍👩‍👧 family 🐱🌧️:2",
        "e\u0301le\u0300ve \u202eevil\u202c \u200b zero-width",
        "x" * 2000,
    ]
    jobs = {}
    for prompt in prompts:
        response = client.post("/v1/jobs", json=small_job(prompts=prompt, iterations=2))
        assert response.status_code == 202, response.text
        jobs[response.json()["id"]] = prompt
    for job_id, prompt in jobs.items():
        job = wait_until(lambda job_id=job_id: client.get(f"/v1/jobs/{job_id}").json())
        assert job["status"] == "succeeded", job
        assert job["params"]["prompts"] == prompt
        image = client.get(f"/v1/jobs/{job_id}/image")
        assert image.status_code == 200
        with Image.open(io.BytesIO(image.content)) as decoded:
            assert decoded.text["prompt"] == prompt  # the PNG metadata keeps it exactly
