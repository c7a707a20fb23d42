"""`artgen generate --server` and `artgen jobs ...` against a real `artgen serve --model tiny`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from artgen import cli_remote
from artgen.cli import app
from artgen.client import Client, JobStatus
from artgen.client.sync import Client as SyncClient
from artgen.media import read_parameters, write_mp4
from artgen.videos import VideoLimits, probe
from support import small_job, wait_for

pytestmark = pytest.mark.timeout(240)

SMALL = ["--size", "32", "32", "--iterations", "4", "--cutn", "4", "--no-augment", "--seed", "2"]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in tmp_path with no ARTGEN_* server settings leaking in."""
    for name in ("ARTGEN_SERVER", "ARTGEN_API_KEY", "ARTGEN_MODEL", "ARTGEN_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARTGEN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def client(server) -> Iterator[Client]:
    with Client(server.url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def no_local_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote run must not load models here: loading them fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("--server loaded models locally")

    monkeypatch.setattr("artgen.models.loading.load_models", refuse)


def _remote(server) -> list[str]:
    return ["--server", server.url, "--api-key", server.api_key]


def _newest_job(client: Client) -> str:
    return client.list(limit=1).items[0].id


def test_generate_on_the_server_writes_the_servers_png(
    runner, server, client, tmp_path, no_local_models
) -> None:
    out = tmp_path / "remote.png"
    args = ["generate", "a red apple", "-o", str(out), *SMALL, *_remote(server)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    job_id = _newest_job(client)
    assert f"submitted job {job_id}" in result.stderr
    assert "generating" in result.stderr and "4/4" in result.stderr
    assert f"wrote {out} (seed 2)" in result.stdout
    assert out.read_bytes() == client.image(job_id)
    with Image.open(out) as picture:
        recorded = read_parameters(picture)
    assert recorded["seed"] == 2 and recorded["iterations"] == 4

    # --params-from reruns it on the server: the same seed and parameters, the same picture.
    again = tmp_path / "again.png"
    result = runner.invoke(app, ["generate", "-o", str(again), "--params-from", str(out)]
                           + _remote(server))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == out.read_bytes()


def test_server_and_key_from_the_environment_and_a_video(
    runner, server, client, tmp_path, no_local_models
) -> None:
    out, video = tmp_path / "env.png", tmp_path / "env.mp4"
    env = {"ARTGEN_SERVER": server.url, "ARTGEN_API_KEY": server.api_key}
    args = ["generate", "a red apple", "-o", str(out), "--video", str(video), *SMALL]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert client.get(_newest_job(client)).params["video"] is True
    assert video.read_bytes()[4:8] == b"ftyp"
    assert out.is_file()


def test_generate_uploads_init_and_image_prompts(runner, server, client, tmp_path) -> None:
    Image.new("RGB", (32, 32), "green").save(tmp_path / "start.png")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "style.png")
    out = tmp_path / "images.png"
    args = ["generate", "a red apple", "-o", str(out), *SMALL, "--init-image", "start.png"]
    args += ["--init-weight", "0.5", "--image-prompt", "style.png:0.7:0.1", *_remote(server)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    params = client.get(_newest_job(client)).params
    assert params["image_prompt_weights"] == [0.7] and params["image_prompt_stops"] == [0.1]
    assert params["init_weight"] == 0.5


def _interrupt_after_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    original = SyncClient.events

    def events(self, job_id, last_event_id=None):
        for event in original(self, job_id, last_event_id):
            yield event
            raise KeyboardInterrupt

    monkeypatch.setattr(SyncClient, "events", events)


def _long_run(server, out: Path) -> list[str]:
    return ["generate", "a red apple", "-o", str(out), "--size", "32", "32", "--cutn", "2"] + [
        "--iterations", "10000", *_remote(server)
    ]  # fmt: skip


def test_ctrl_c_cancels_the_remote_job(runner, server, client, tmp_path, monkeypatch) -> None:
    out = tmp_path / "never.png"
    with monkeypatch.context() as patch:
        _interrupt_after_first_event(patch)
        result = runner.invoke(app, _long_run(server, out))
    assert result.exit_code == 130, result.output
    job_id = _newest_job(client)
    assert f"canceled job {job_id}" in result.stderr
    assert client.wait(job_id).status == JobStatus.canceled
    assert not out.exists()


def test_ctrl_c_at_a_terminal_asks_and_no_keeps_the_job(
    runner, server, client, tmp_path, monkeypatch
) -> None:
    with monkeypatch.context() as patch:
        _interrupt_after_first_event(patch)
        patch.setattr(cli_remote, "stdin_is_terminal", lambda: True)
        result = runner.invoke(app, _long_run(server, tmp_path / "never.png"), input="n\n")
    assert result.exit_code == 130, result.output
    job_id = _newest_job(client)
    assert "cancel job" in result.output
    assert f"artgen jobs wait {job_id}" in result.stderr
    job = client.get(job_id)
    assert job.status in (JobStatus.queued, JobStatus.running) and not job.cancel_requested
    client.cancel(job_id)
    assert client.wait(job_id).status == JobStatus.canceled


def test_remote_errors_name_the_code_and_field(runner, server, tmp_path) -> None:
    out = tmp_path / "x.png"
    result = runner.invoke(
        app, ["generate", "x", "-o", str(out), *SMALL, "--model", "nope", *_remote(server)]
    )
    assert result.exit_code == 2
    assert "422 validation_error: model" in result.stderr
    result = runner.invoke(app, ["generate", "x", "-o", str(out), *SMALL, "--server", server.url])
    assert result.exit_code == 2 and "401 unauthorized" in result.stderr
    result = runner.invoke(app, ["generate", "x", *SMALL, "--device", "cpu", *_remote(server)])
    assert result.exit_code == 2 and "--device applies to a local run" in result.stderr
    result = runner.invoke(app, ["jobs", "list", "--server", "gpu-box:8000"])
    assert result.exit_code == 2 and "http:// or https://" in result.stderr
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 2 and "give --server URL" in result.stderr


def test_jobs_commands(runner, server, client, tmp_path) -> None:
    job = client.submit(**small_job(seed=4))
    remote = _remote(server)
    out = tmp_path / "waited.png"
    result = runner.invoke(app, ["jobs", "wait", job.id, "-o", str(out), *remote])
    assert result.exit_code == 0, result.output
    assert f"{job.id}: succeeded" in result.stdout
    assert out.read_bytes() == client.image(job.id)

    result = runner.invoke(app, ["jobs", "show", job.id, *remote])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "succeeded"

    result = runner.invoke(app, ["jobs", "list", "--status", "succeeded", *remote])
    assert result.exit_code == 0, result.output
    assert job.id in result.stdout and "of" in result.stderr

    long_job = client.submit(**small_job(iterations=10_000, cutn=2))
    result = runner.invoke(app, ["jobs", "cancel", long_job.id, *remote])
    assert result.exit_code == 0, result.output
    assert long_job.id in result.stdout
    wait_for(lambda: client.get(long_job.id).status == JobStatus.canceled, timeout=120)
    result = runner.invoke(app, ["jobs", "wait", long_job.id, *remote])
    assert result.exit_code == 1 and "canceled" in result.stderr

    result = runner.invoke(app, ["jobs", "delete", job.id, *remote])
    assert result.exit_code == 0 and f"deleted {job.id}" in result.stdout
    result = runner.invoke(app, ["jobs", "show", job.id, *remote])
    assert result.exit_code == 2 and "404 not_found" in result.stderr


VIDEO_QUICK = ["--size", "32", "32", "--cutn", "4", "--iterations", "2"]
VIDEO_QUICK += ["--iterations-per-frame", "2", "--seed", "3"]


def _source_video(path: Path, frames: int, fps: float) -> Path:
    """A small moving gradient as an MP4."""
    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    images = (np.stack([np.roll(ramp, 4 * k)[None, :].repeat(32, 0)] * 3, axis=-1)
              for k in range(frames))  # fmt: skip
    write_mp4(images, path, fps)
    return path


def test_animate_on_the_server_writes_its_mp4(
    runner, server, client, tmp_path, no_local_models
) -> None:
    output = tmp_path / "city.mp4"
    args = ["animate", "a city at night", "-o", str(output), *VIDEO_QUICK, "--frames", "3"]
    args += ["--fps", "5", "--zoom", "0:(1.05), 2:(1.0)", "--prompt-at", "2:a stormy sea"]
    result = runner.invoke(app, [*args, *_remote(server)])
    assert result.exit_code == 0, result.output
    job = client.get(_newest_job(client))
    assert job.kind.value == "animation" and job.params["zoom"] == "0:(1.05), 2:(1.0)"
    assert f"submitted animation job {job.id}" in result.stderr and "frame" in result.stderr
    assert f"wrote {output} (3 frames, seed 3)" in result.stdout
    assert output.read_bytes() == client.video(job.id)
    info = probe(output, VideoLimits())
    assert (info.frames, info.fps, info.width, info.height) == (3, 5.0, 32, 32)

    refused = runner.invoke(app, [*args, "--frames-dir", "frames", *_remote(server)])
    assert refused.exit_code == 2 and "--frames-dir applies to a local run" in refused.stderr


def test_restyle_on_the_server_uploads_the_source(
    runner, server, client, tmp_path, no_local_models
) -> None:
    source = _source_video(tmp_path / "in.mp4", frames=3, fps=6)
    output = tmp_path / "out.mp4"
    args = ["restyle", str(source), "an oil painting", "-o", str(output), "--cutn", "4"]
    args += ["--iterations", "2", "--iterations-per-frame", "2", "--coherence", "0.4"]
    result = runner.invoke(app, [*args, *_remote(server)])
    assert result.exit_code == 0, result.output
    job = client.get(_newest_job(client))
    assert job.kind.value == "restyle" and job.params["coherence"] == 0.4
    # No --size: the video's own, as a local restyle takes it.
    assert (job.params["width"], job.params["height"]) == (32, 32)
    info = probe(output, VideoLimits())
    assert (info.frames, info.fps, info.width, info.height) == (3, 6.0, 32, 32)
