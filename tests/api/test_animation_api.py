"""Animation and restyle jobs through the HTTP API (tiny models, 32x32, 3 frames)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
from apitools import assert_error, wait_for
from fastapi.testclient import TestClient
from PIL import Image

from artgen.videos import VideoLimits, probe

SMALL = {"width": 32, "height": 32, "iterations": 2, "iterations_per_frame": 2, "cutn": 4}


def animation(**fields: object) -> dict[str, object]:
    """A 3-frame animation job at 32x32."""
    return {"kind": "animation", "prompt": "a red circle", **SMALL, "frames": 3, **fields}


def make_video(path: Path, *, frames: int = 3, fps: int = 8, audio: bool = False) -> Path:
    """A small test-pattern video made with the ffmpeg binary (with a sine tone when asked)."""
    seconds = frames / fps
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi"]
    command += ["-i", f"testsrc=size=32x32:rate={fps}:duration={seconds}"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    command += ["-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True, timeout=60)
    return path


def submit_restyle(
    client: TestClient, video: bytes, name: str = "in.mp4", **fields: object
) -> object:
    """POST a restyle job (multipart: params + source_video)."""
    import json

    params = json.dumps({"kind": "restyle", "prompt": "an oil painting", **SMALL, **fields})
    files = {"params": (None, params), "source_video": (name, video, "video/mp4")}
    return client.post("/v1/jobs", files=files)


def video_info(client: TestClient, job: dict, tmp_path: Path):  # noqa: ANN201
    """Download the job's MP4 and probe it."""
    response = client.get(job["urls"]["video"])
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    path = tmp_path / f"{job['id']}.mp4"
    path.write_bytes(response.content)
    return probe(path, VideoLimits())


def test_an_animation_end_to_end(worker_client: TestClient, tmp_path: Path) -> None:
    fields = animation(fps=5, zoom="0:(1.1)", angle="0:(2)", seed=4)
    fields["prompt_schedule"] = [{"frame": 2, "prompt": "a blue square"}]
    response = worker_client.post("/v1/jobs", json=fields)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "animation" and job["frames"] == 3 and job["iterations"] == 2 + 2 * 2
    assert job["params"]["zoom"] == "0:(1.1)" and job["params"]["fps"] == 5
    job = wait_for(worker_client, job["id"])
    assert job["status"] == "succeeded", job
    assert job["frames_done"] == 3 and job["progress"] == 1.0

    frames = worker_client.get(job["urls"]["frames"]).json()
    assert frames == [f"/v1/jobs/{job['id']}/frames/{index}" for index in range(3)]
    for url in frames:
        response = worker_client.get(url)
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (32, 32)
    assert_error(worker_client.get(f"/v1/jobs/{job['id']}/frames/3"), 404, "not_found")
    last = worker_client.get(frames[-1]).content
    image = worker_client.get(job["urls"]["image"]).content
    assert Image.open(io.BytesIO(image)).tobytes() == Image.open(io.BytesIO(last)).tobytes()

    info = video_info(worker_client, job, tmp_path)
    assert info.frames == 3 and round(info.fps) == 5

    events = worker_client.get(f"/v1/jobs/{job['id']}/events").text
    assert events.count("event: frame\n") == 3
    assert '"frame":1,"frames":3' in events  # progress carries frame k of N


@pytest.mark.parametrize("audio", [False, True])
def test_a_restyle_keeps_the_sources_frames_fps_and_audio(
    worker_client: TestClient, tmp_path: Path, audio: bool
) -> None:
    source = make_video(tmp_path / "in.mp4", frames=3, fps=8, audio=audio)
    response = submit_restyle(worker_client, source.read_bytes(), coherence=0.3, seed=2)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "restyle" and job["frames"] == 3 and job["params"]["fps"] == 8
    job = wait_for(worker_client, job["id"])
    assert job["status"] == "succeeded", job
    assert job["frames_done"] == 3 and len(worker_client.get(job["urls"]["frames"]).json()) == 3
    info = video_info(worker_client, job, tmp_path)
    assert round(info.fps) == 8 and info.has_audio == audio and info.frames == 3


def test_cancel_keeps_the_frames_so_far_as_a_partial_video(
    worker_client: TestClient, tmp_path: Path
) -> None:
    response = worker_client.post("/v1/jobs", json=animation(frames=500))
    job_id = response.json()["id"]
    wait_for(worker_client, job_id, lambda job: job["frames_done"] >= 2, timeout=120)
    assert worker_client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    job = wait_for(worker_client, job_id)
    assert job["status"] == "canceled" and 2 <= job["frames_done"] < 500
    assert job["urls"]["image"] is None and job["urls"]["video"] is not None
    info = video_info(worker_client, job, tmp_path)
    assert info.frames == job["frames_done"]
    done = worker_client.get(f"/v1/jobs/{job_id}/events").text.split("event: done\n")[-1]
    assert f"/v1/jobs/{job_id}/video" in done


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"prompt": "x", "frames": 3}, "frames", "kind animation"),
        ({"prompt": "x", "zoom": "0:(1.02)"}, "zoom", "not a field"),
        (animation(zoom="0:(1.02), 60:1.0"), "zoom", "zoom: position 13: expected"),
        (animation(angle="0:(0.5"), "angle", "position"),
        (animation(zoom="0:(0)"), "zoom", "above 0"),
        (animation(translation_x="5"), "translation_x", "position"),
        (animation(coherence=0.5), "coherence", "restyle"),
        (animation(frames=0), "frames", ""),
        (animation(video=True), "video", "leave `video` out"),
        (animation(prompt_schedule=[{"frame": 1, "prompt": ""}]), "prompt_schedule.0.prompt", ""),
        (
            animation(prompt_schedule=[{"frame": 1, "prompt": "a"}, {"frame": 1, "prompt": "b"}]),
            "prompt_schedule",
            "same frame",
        ),
        ({"kind": "restyle", "prompt": "x"}, "source_video", "multipart"),
        ({"kind": "film", "prompt": "x"}, "kind", ""),
    ],
)
def test_bad_animation_fields_are_422_naming_the_field(
    idle_client: TestClient, fields: dict, field: str, message: str
) -> None:
    body = assert_error(idle_client.post("/v1/jobs", json=fields), 422, "validation_error", field)
    assert message in body["error"]["message"]
    assert idle_client.get("/v1/jobs").json()["total"] == 0


def test_restyle_refuses_fields_its_source_decides(idle_client: TestClient, tmp_path: Path) -> None:
    video = make_video(tmp_path / "in.mp4").read_bytes()
    assert_error(submit_restyle(idle_client, video, frames=3), 422, "validation_error", "frames")
    assert_error(submit_restyle(idle_client, video, zoom="0:(1)"), 422, "validation_error", "zoom")
    files = {"params": (None, '{"kind": "animation", "prompt": "x"}')}
    files["source_video"] = ("in.mp4", video, "video/mp4")
    response = idle_client.post("/v1/jobs", files=files)
    assert_error(response, 422, "validation_error", "source_video")
    assert idle_client.get("/v1/jobs").json()["total"] == 0


def test_the_openapi_has_an_example_per_kind(idle_client: TestClient) -> None:
    schema = idle_client.get("/openapi.json").json()["components"]["schemas"]["JobCreate"]
    kinds = {example.get("kind", "picture") for example in schema["examples"]}
    assert kinds == {"picture", "animation", "restyle"}
