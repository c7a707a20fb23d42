"""Bad input gets a clear 4xx naming what to fix, and nothing is stored (no worker needed)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from apitools import assert_error, png_bytes, small_job
from PIL import Image


def _post(client, body):
    return client.post("/v1/jobs", json=body)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prompts": "a:1:inf"}, "prompts"),
        ({"prompts": "apple | | pear"}, "prompts"),
        ({"prompts": "apple:1e999"}, "prompts"),
        ({"prompts": ":2"}, "prompts"),
        ({"width": 8}, "width"),
        ({"height": 100_000}, "height"),
        ({"width": "wide"}, "width"),
        ({"iterations": 0}, "iterations"),
        ({"iterations": 10_000_000}, "iterations"),
        ({"cutn": 0}, "cutn"),
        ({"cutn": 100_000}, "cutn"),
        ({"colour": "red"}, "colour"),
        ({"seed": -1}, "seed"),
        ({"step_size": 0}, "step_size"),
    ],
)
def test_invalid_params_answer_422_naming_the_field(idle_client, overrides, field):
    body = assert_error(_post(idle_client, small_job(**overrides)), 422, "validation_error", field)
    assert body["error"]["details"][0]["message"]


def test_unknown_field_says_unknown(idle_client):
    body = assert_error(_post(idle_client, small_job(colour="red")), 422, "validation_error")
    assert body["error"]["details"] == [{"field": "colour", "message": "unknown field"}]


def test_empty_prompt_without_image_prompts_is_refused(idle_client):
    assert_error(_post(idle_client, small_job(prompts="")), 422, "validation_error", "prompts")
    assert_error(_post(idle_client, small_job(prompts="   ")), 422, "validation_error", "prompts")


def test_over_long_prompt_is_refused(idle_client):
    body = assert_error(
        _post(idle_client, small_job(prompts="a" * 5000)), 422, "validation_error", "prompts"
    )
    assert "2000" in body["error"]["message"]


def test_size_over_server_limit_is_refused(client_factory):
    client = client_factory(max_size=64)
    body = assert_error(_post(client, small_job(width=128)), 422, "validation_error", "width")
    assert "64" in body["error"]["message"]


def test_unknown_model_names_the_field_and_the_known_names(idle_client):
    body = assert_error(
        _post(idle_client, small_job(model="no_such_model")), 422, "validation_error", "model"
    )
    assert "tiny" in body["error"]["message"]
    body = assert_error(
        _post(idle_client, small_job(clip_models=["nope"])), 422, "validation_error"
    )
    assert "clip_models" in body["error"]["message"]


def test_malformed_json_and_wrong_types(idle_client):
    response = idle_client.post(
        "/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_error", "body")
    assert_error(_post(idle_client, ["a list"]), 422, "validation_error", "body")
    response = idle_client.post("/v1/jobs", content=b"x", headers={"Content-Type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type")


def test_nothing_is_stored_after_refusals(idle_client):
    _post(idle_client, small_job(width=1))
    _post(idle_client, small_job(bogus=1))
    assert idle_client.get("/v1/jobs").json()["total"] == 0


def _multipart(client, files, params=None):
    data = {"params": json.dumps(params or small_job())}
    return client.post("/v1/jobs", data=data, files=files)


def test_multipart_with_images_is_accepted(idle_client):
    files = [
        ("init_image", ("init.png", png_bytes(), "image/png")),
        ("image_prompts", ("a.jpg", png_bytes(fmt="JPEG"), "image/jpeg")),
        ("image_prompts", ("b.webp", png_bytes(fmt="WEBP"), "image/webp")),
    ]
    response = _multipart(idle_client, files, small_job(prompts=""))
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"


def test_multipart_params_errors_name_the_field(idle_client):
    files = [("init_image", ("init.png", png_bytes(), "image/png"))]
    response = idle_client.post("/v1/jobs", data={"params": "{"}, files=files)
    assert_error(response, 422, "validation_error", "params")
    response = _multipart(idle_client, files, small_job(width=3))
    assert_error(response, 422, "validation_error", "params.width")
    response = idle_client.post("/v1/jobs", files=files)
    assert_error(response, 422, "validation_error", "params")
    response = idle_client.post(
        "/v1/jobs", data={"params": json.dumps(small_job()), "extra": "1"}, files=files
    )
    assert_error(response, 422, "validation_error", "extra")


def test_text_file_named_png_is_415(idle_client):
    files = [("init_image", ("evil.png", b"just some text, not an image", "image/png"))]
    assert_error(_multipart(idle_client, files), 415, "unsupported_media_type", "init_image")


def test_other_image_formats_are_415(idle_client):
    gif = png_bytes(fmt="GIF")
    files = [("image_prompts", ("a.gif", gif, "image/gif"))]
    assert_error(_multipart(idle_client, files), 415, "unsupported_media_type", "image_prompts.0")
    bmp = png_bytes(fmt="BMP")
    files = [("init_image", ("a.png", bmp, "image/png"))]
    assert_error(_multipart(idle_client, files), 415, "unsupported_media_type")


def test_truncated_image_is_422(idle_client):
    data = png_bytes(size=(64, 64))
    files = [("init_image", ("cut.png", data[: len(data) // 2], "image/png"))]
    assert_error(_multipart(idle_client, files), 422, "invalid_image", "init_image")
    jpeg = png_bytes(size=(64, 64), fmt="JPEG")
    files = [("init_image", ("cut.jpg", jpeg[:200], "image/jpeg"))]
    assert_error(_multipart(idle_client, files), 422, "invalid_image", "init_image")


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (decompression bomb shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_is_422_before_decoding(idle_client):
    bomb = _bomb_png(100_000, 100_000)
    assert len(bomb) < 200
    files = [("init_image", ("bomb.png", bomb, "image/png"))]
    body = assert_error(_multipart(idle_client, files), 422, "invalid_image", "init_image")
    assert "pixels" in body["error"]["message"]


def test_image_over_pixel_limit_is_422(client_factory):
    client = client_factory(max_image_pixels=32 * 32)
    files = [("init_image", ("big.png", png_bytes(size=(64, 64)), "image/png"))]
    body = assert_error(_multipart(client, files), 422, "invalid_image")
    assert "64x64" in body["error"]["message"]


def test_upload_over_the_limit_is_413(client_factory):
    client = client_factory(max_upload_bytes=10_000)
    noisy = Image.effect_noise((128, 128), 64).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    assert len(buffer.getvalue()) > 10_000
    files = [("init_image", ("big.png", buffer.getvalue(), "image/png"))]
    assert_error(_multipart(client, files), 413, "payload_too_large", "init_image")


def test_body_over_the_cap_is_413_by_content_length_and_while_streaming(client_factory):
    client = client_factory(max_upload_bytes=1000)
    huge = b"x" * (3 * 1024 * 1024)
    response = client.post("/v1/jobs", content=huge, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")

    def chunks():
        for _ in range(40):
            yield b"y" * 65536

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


def test_too_many_multipart_fields_is_4xx(idle_client):
    data = {f"field{i}": "x" for i in range(2000)}
    response = idle_client.post("/v1/jobs", data=data, files=[("init_image", ("a", b"a"))])
    assert_error(response, 400, "invalid_multipart")
    files = [("image_prompts", (f"{i}.png", png_bytes(), "image/png")) for i in range(50)]
    assert_error(_multipart(idle_client, files), 400, "invalid_multipart")
    assert idle_client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/not-a-uuid",
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/%2Fetc%2Fpasswd/image",
        "/v1/jobs/abc%00def/preview",
        "/v1/jobs/../../etc/passwd",
    ],
)
def test_non_uuid_ids_never_reach_the_disk(idle_client, path):
    response = idle_client.get(path)
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"]["code"] in ("not_found", "validation_error")
    assert "root:" not in response.text


def test_unknown_uuid_is_404_everywhere(idle_client):
    job_id = "00000000-0000-4000-8000-000000000000"
    for method, path in [
        ("GET", ""),
        ("GET", "/preview"),
        ("GET", "/image"),
        ("GET", "/video"),
        ("GET", "/events"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        response = idle_client.request(method, f"/v1/jobs/{job_id}{path}")
        assert_error(response, 404, "not_found")


def test_list_bounds(idle_client):
    assert_error(idle_client.get("/v1/jobs?limit=0"), 422, "validation_error", "limit")
    assert_error(idle_client.get("/v1/jobs?limit=1000"), 422, "validation_error", "limit")
    assert_error(idle_client.get("/v1/jobs?offset=-1"), 422, "validation_error", "offset")
    assert_error(idle_client.get("/v1/jobs?status=done"), 422, "validation_error", "status")


def test_unknown_route_and_method_are_json(idle_client):
    assert_error(idle_client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(idle_client.put("/v1/jobs"), 405, "method_not_allowed")


def test_prompt_text_control_characters_rtl_and_emoji(idle_client):
    body = assert_error(
        _post(idle_client, small_job(prompts="a cat\x00 on a mat")), 422, "validation_error"
    )
    assert "control characters" in body["error"]["message"]
    for prompt in ("قطة على حصيرة", "🐱 on a mat:2 | 🌧️:-0.5", "line one\nline two\ttab"):
        response = _post(idle_client, small_job(prompts=prompt))
        assert response.status_code == 202, response.text
        assert response.json()["params"]["prompts"] == prompt


def test_openapi_documents_errors_in_our_shape(idle_client):
    schema = idle_client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    readiness = schema["paths"]["/readyz"]["get"]["responses"]["503"]
    assert readiness["content"]["application/json"]["schema"]["$ref"].endswith("/Readiness")
    for path, operations in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue  # the probes answer their own shapes
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, method, status)


def test_json_body_over_one_mebibyte_is_413(idle_client):
    huge = json.dumps(small_job(prompts="x", padding="y" * (2 * 1024 * 1024)))
    response = idle_client.post(
        "/v1/jobs", content=huge, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


def test_bad_last_event_id_is_422(idle_client):
    job_id = idle_client.post("/v1/jobs", json=small_job()).json()["id"]
    response = idle_client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "abc"})
    assert_error(response, 422, "validation_error", "Last-Event-ID")
    response = idle_client.get(f"/v1/jobs/{job_id}/events?last_event_id=-4")
    assert_error(response, 422, "validation_error", "last_event_id")


def test_streamed_multipart_over_the_cap_is_413_on_every_upload_route(client_factory):
    client = client_factory(max_upload_bytes=1000)
    boundary = "xyz"

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(40):
            yield b"\x89PNG" + b"y" * 65532
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for url in ("/v1/generate_textimg2img?prompt=x&width=32&height=32", "/v1/jobs"):
        response = client.post(url, content=body(), headers=headers)
        assert_error(response, 413, "payload_too_large")


# Issue 12: hostile and first-contact requests.


@pytest.mark.parametrize("depth", [40, 2000, 100_000])
def test_deeply_nested_json_is_422_as_body_and_as_params(idle_client, depth):
    nested = '{"prompts": "a", "schedule": ' + "[" * depth + "]" * depth + "}"
    response = idle_client.post(
        "/v1/jobs", content=nested, headers={"Content-Type": "application/json"}
    )
    body = assert_error(response, 422, "validation_error", "body")
    assert "nested" in body["error"]["message"]
    response = idle_client.post("/v1/jobs", files={"params": (None, nested)})
    assert_error(response, 422, "validation_error", "params")
    assert idle_client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"at": 2, "prompts": ""}, "empty"),
        ({"at": 2, "prompts": "   "}, "empty"),
        ({"at": 2, "prompts": "a storm\x00at sea"}, "control characters"),
        ({"at": 2, "prompts": "x" * 500_000}, "2000"),
    ],
)
def test_schedule_prompts_are_checked_like_prompts(idle_client, entry, fragment):
    schedule = [{"at": 1, "prompts": "calm"}, entry]
    response = _post(idle_client, small_job(iterations=10, schedule=schedule))
    body = assert_error(response, 422, "validation_error", "schedule.1.prompts")
    assert fragment in body["error"]["message"]


def test_schedule_entries_are_capped(idle_client):
    schedule = [{"at": at, "prompts": f"scene {at}"} for at in range(1, 1001)]
    response = _post(idle_client, small_job(iterations=2000, schedule=schedule))
    body = assert_error(response, 422, "validation_error", "schedule")
    assert "at most" in body["error"]["message"]
    fine = [{"at": at, "prompts": f"scene {at}"} for at in range(1, 11)]
    assert _post(idle_client, small_job(iterations=20, schedule=fine)).status_code == 202


def test_clip_models_are_deduplicated_and_capped(idle_client):
    response = _post(idle_client, small_job(clip_models=["tiny"] * 30))
    assert response.status_code == 202, response.text
    assert response.json()["params"]["clip_models"] == ["tiny"]
    many = [f"ViT-B-32/tag{i}" for i in range(9)]
    body = assert_error(
        _post(idle_client, small_job(clip_models=many)), 422, "validation_error", "clip_models"
    )
    assert "at most" in body["error"]["message"]


def test_prompt_is_the_documented_name_and_prompts_an_alias(idle_client):
    text = small_job()
    del text["prompts"]
    response = _post(idle_client, {**text, "prompt": "a castle | fog:-0.5"})
    assert response.status_code == 202, response.text
    assert response.json()["params"]["prompts"] == "a castle | fog:-0.5"
    response = _post(idle_client, {**text, "prompt": ["a castle", "fog:-0.5"]})
    assert response.status_code == 202, response.text
    assert response.json()["params"]["prompts"] == "a castle | fog:-0.5"
    params = json.dumps({**text, "prompt": "a"})
    response = idle_client.post("/v1/jobs", files={"params": (None, params)})
    assert response.status_code == 202, response.text
    assert _post(idle_client, small_job(prompts="legacy name")).status_code == 202
    both = _post(idle_client, {**text, "prompt": "a", "prompts": "b"})
    assert_error(both, 422, "validation_error", "prompt")
    missing = assert_error(_post(idle_client, text), 422, "validation_error", "prompt")
    assert "prompt" in missing["error"]["message"]
    bad = _post(idle_client, {**text, "prompt": "a\x00b"})
    assert_error(bad, 422, "validation_error", "prompt")


def test_openapi_documents_prompt(idle_client):
    schema = idle_client.get("/openapi.json").json()
    create = schema["components"]["schemas"]["JobCreate"]
    assert "prompt" in create["properties"] and "prompts" not in create["properties"]
    assert create["required"] == ["prompt"]
    examples = create["examples"]
    assert examples and all("prompt" in example for example in examples)


def test_a_noise_only_job_is_accepted(idle_client):
    response = _post(idle_client, small_job(prompts="", noise_prompts="1:1"))
    assert response.status_code == 202, response.text
    refused = _post(idle_client, small_job(prompts="", noise_prompts=" "))
    assert_error(refused, 422, "validation_error", "prompts")


@pytest.mark.parametrize("suffix", ["", "/preview", "/image", "/video", "/events"])
def test_non_uuid_ids_are_404_like_any_unknown_id(idle_client, suffix):
    body = assert_error(idle_client.get(f"/v1/jobs/not-a-uuid{suffix}"), 404, "not_found")
    assert "no job" in body["error"]["message"]


def test_non_uuid_ids_are_404_for_cancel_and_delete(idle_client):
    assert_error(idle_client.post("/v1/jobs/not-a-uuid/cancel"), 404, "not_found")
    assert_error(idle_client.delete("/v1/jobs/not-a-uuid"), 404, "not_found")


def test_415_and_every_error_have_details(idle_client):
    response = idle_client.post("/v1/jobs", content="x", headers={"Content-Type": "text/plain"})
    body = assert_error(response, 415, "unsupported_media_type")
    assert body["error"]["details"] == [
        {"field": "Content-Type", "message": body["error"]["details"][0]["message"]}
    ]
    files = [("init_image", ("evil.png", b"just some text, not an image", "image/png"))]
    body = assert_error(_multipart(idle_client, files), 415, "unsupported_media_type")
    assert body["error"]["details"][0]["field"] == "init_image"
    missing = assert_error(idle_client.get("/v1/nothing-here"), 404, "not_found")
    assert missing["error"]["details"] == []
