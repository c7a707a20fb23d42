"""Hostile restyle uploads: each gets a clear 4xx and nothing is stored (no record, no file)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

PARAMS = {"kind": "restyle", "prompt": "an oil painting", "width": 32, "height": 32}


def ffmpeg(*arguments: str) -> None:
    """Run the bundled ffmpeg binary quietly."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *arguments]
    subprocess.run(command, check=True, timeout=60)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real and broken video files, made once."""
    folder = tmp_path_factory.mktemp("videos")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=8:duration=0.5", "-pix_fmt", "yuv420p",
           str(folder / "ok.mp4"))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", str(folder / "sound.mp4"))
    ok = (folder / "ok.mp4").read_bytes()
    gif = io.BytesIO()
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=125, loop=0)
    return {
        "ok": ok,
        "gif": gif.getvalue(),
        "truncated": ok[: len(ok) // 2],
        "random": os.urandom(4096),
        "ftyp_garbage": ok[:32] + os.urandom(2048),
        "audio_only": (folder / "sound.mp4").read_bytes(),
        "huge_gif": huge_gif_header(),
    }


def huge_gif_header() -> bytes:
    """A GIF whose header claims 4000x3000 pixels but carries a few bytes of image data."""
    screen = struct.pack("<HHBBB", 4000, 3000, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, 4000, 3000, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b";"


def post(client: TestClient, data: bytes, name: str = "in.mp4", params: dict = PARAMS) -> object:
    files = {"params": (None, json.dumps(params)), "source_video": (name, data, "video/mp4")}
    return client.post("/v1/jobs", files=files)


def assert_refused(client: TestClient, response: object, status: int, code: str) -> None:
    """The right 4xx naming source_video, and nothing stored."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["field"] == "source_video", error
    assert "Traceback" not in response.text
    assert client.get("/v1/jobs").json()["total"] == 0
    data_dir = Path(client.app.state.settings.data_dir)
    assert list((data_dir / "jobs").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("random", 415, "unsupported_media_type"),
        ("truncated", 422, "video_invalid"),
        ("ftyp_garbage", 422, "video_invalid"),
        ("audio_only", 422, "video_invalid"),
        ("huge_gif", 413, "video_too_large"),
    ],
)
def test_broken_and_hostile_files_are_refused(
    app_factory: Callable[..., TestClient],
    videos: dict[str, bytes],
    name: str,
    status: int,
    code: str,
) -> None:
    client = app_factory()
    assert_refused(client, post(client, videos[name]), status, code)


def test_an_empty_file_is_refused(app_factory: Callable[..., TestClient]) -> None:
    client = app_factory()
    assert_refused(client, post(client, b""), 422, "video_empty")


@pytest.mark.parametrize(
    ("limits", "status", "code"),
    [
        ({"video_max_bytes": 1000}, 413, "payload_too_large"),
        ({"video_max_frames": 2}, 422, "video_too_long"),
        ({"video_max_seconds": 0.2}, 422, "video_too_long"),
        ({"video_max_width": 16}, 413, "video_too_large"),
    ],
)
def test_the_configured_limits_apply(
    app_factory: Callable[..., TestClient], videos: dict[str, bytes], limits: dict, status: int,
    code: str,
) -> None:  # fmt: skip
    client = app_factory(**limits)
    assert_refused(client, post(client, videos["ok"]), status, code)


def test_an_mp4_and_an_animated_gif_are_taken(
    app_factory: Callable[..., TestClient], videos: dict[str, bytes]
) -> None:
    client = app_factory()
    response = post(client, videos["ok"])
    assert response.status_code == 202, response.text
    assert response.json()["frames"] == 4 and response.json()["params"]["fps"] == 8
    response = post(client, videos["gif"], "in.gif")
    assert response.status_code == 202, response.text
    assert response.json()["frames"] == 3 and response.json()["params"]["fps"] == 8


def test_a_restyle_without_a_size_takes_the_sources(
    app_factory: Callable[..., TestClient], videos: dict[str, bytes]
) -> None:
    client = app_factory()
    params = {"kind": "restyle", "prompt": "an oil painting", "height": 48}
    job = post(client, videos["ok"], params=params).json()
    assert (job["params"]["width"], job["params"]["height"]) == (32, 48)
