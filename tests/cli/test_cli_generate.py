"""`artgen generate` end to end on CPU with the tiny models (32x32, cutn 4): PNG metadata,
snapshots, timelapse, --params-from, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from artgen.cli import app

TINY = ["--model", "tiny", "--size", "32", "32", "--cutn", "4", "--device", "cpu"]


def test_generate_writes_png_with_metadata_snapshots_and_video(
    runner: CliRunner, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "castle.png"
    video = tmp_path / "castle.mp4"
    args = ["generate", "a castle in the clouds:1 | fog:-0.5", "-o", str(output), *TINY]
    args += ["--iterations", "4", "--seed", "7", "--save-every", "2", "--video", str(video)]
    args += ["--video-every", "2", "--fps", "4", "--step-size", "0.2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    with Image.open(output) as image:
        assert image.format == "PNG" and image.size == (32, 32)
        text = dict(image.text)
    assert text["prompt"] == "a castle in the clouds:1 | fog:-0.5"
    assert text["seed"] == "7"
    params = json.loads(text["parameters"])
    assert params["seed"] == 7 and params["iterations"] == 4 and params["cutn"] == 4
    assert (params["width"], params["height"], params["step_size"]) == (32, 32, 0.2)
    assert params["model"] == "tiny" and params["clip_models"] == ["tiny"]

    snapshots = sorted(path.name for path in output.parent.glob("castle-*.png"))
    assert snapshots == ["castle-0002.png", "castle-0004.png"]
    with Image.open(output.parent / "castle-0004.png") as snapshot:
        assert snapshot.size == (32, 32)

    assert video.stat().st_size > 0
    frames = iio.imread(video, plugin="pyav") if _has_pyav() else _ffmpeg_frames(video)
    # The initial image, then every second iteration.
    assert len(frames) == 3 and frames[0].shape == (32, 32, 3)


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _ffmpeg_frames(video: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(video, format="FFMPEG") as reader:
        return [np.asarray(frame) for frame in reader]


def test_random_seed_is_recorded_and_the_png_reproduces_the_image(
    runner: CliRunner, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    args = ["generate", "fog:1 | rain:-0.5", "-o", str(first), *TINY, "--iterations", "2"]
    result = runner.invoke(app, [*args, "--step-size", "0.3"])
    assert result.exit_code == 0, result.output
    seed = Image.open(first).text["seed"]
    assert seed.isdigit() and f"seed {seed}" in result.output
    assert json.loads(Image.open(first).text["parameters"])["seed"] == int(seed)

    # Everything comes from the first PNG: prompts, seed, size, cutn, step size, models.
    args = ["generate", "--params-from", str(first), "-o", str(second), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert Image.open(second).text["seed"] == seed
    recorded = json.loads(Image.open(second).text["parameters"])
    assert recorded["prompts"] == "fog:1 | rain:-0.5" and recorded["step_size"] == 0.3
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))


def test_a_service_png_reproduces_with_params_from_pixel_for_pixel(
    runner: CliRunner, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from artgen.api.app import create_app
    from support import make_settings, small_job, wait_for

    # One job through the real service (embedded worker, tiny models, CPU).
    with TestClient(create_app(make_settings(tmp_path / "service"))) as client:
        body = small_job(prompts="a red apple:1 | blur:-0.5", seed=11, augment=True)
        job = client.post("/v1/jobs", json=body).json()

        def finished() -> dict | None:
            record = client.get(f"/v1/jobs/{job['id']}").json()
            return record if record["status"] not in ("queued", "running") else None

        assert wait_for(finished, 120)["status"] == "succeeded"
        (tmp_path / "service.png").write_bytes(client.get(f"/v1/jobs/{job['id']}/image").content)

    with Image.open(tmp_path / "service.png") as made:
        text = dict(made.text)
        served = np.asarray(made.convert("RGB"))
    assert text["prompt"] == "a red apple:1 | blur:-0.5" and text["seed"] == "11"
    recorded = json.loads(text["parameters"])
    assert recorded["model"] == "tiny" and recorded["clip_models"] == ["tiny"]
    assert text["Software"].startswith("artgen ")

    args = ["generate", "--params-from", "service.png", "-o", "cli.png", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "cli.png") as again:
        assert again.text["parameters"] and again.text["seed"] == "11"
        assert np.array_equal(served, np.asarray(again.convert("RGB")))


def test_params_from_reads_the_old_service_key(runner: CliRunner, tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("params", json.dumps({"prompts": "fog", "seed": 3, "iterations": 1}))
    Image.new("RGB", (16, 16)).save(tmp_path / "old.png", pnginfo=info)
    result = runner.invoke(app, ["generate", "--params-from", "old.png", "-o", "new.png", *TINY])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "new.png").text["seed"] == "3"


def test_params_from_a_png_without_parameters_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    Image.new("RGB", (16, 16)).save(tmp_path / "plain.png")
    result = runner.invoke(app, ["generate", "--params-from", "plain.png", *TINY])
    assert result.exit_code == 2
    assert "'plain.png' carries no artgen parameters" in result.output
    result = runner.invoke(app, ["generate", *TINY])
    assert result.exit_code == 2 and "give PROMPTS" in result.output


@pytest.mark.parametrize(
    ("prompt", "extra", "message"),
    [
        ("a castle ||", [], "prompt 2 of 'a castle ||' is empty"),
        (":0.5", [], "prompt ':0.5' has a weight but no text"),
        ("castle:inf", [], "weight in prompt 'castle:inf' must be a finite number"),
        ("castle", ["--size", "8", "8"], "--size"),
        ("castle", ["--optimizer", "lbfgs"], "--optimizer"),
        ("castle", ["--init-image", "missing.png"], "--init-image 'missing.png' does not exist"),
        ("castle", ["--image-prompt", "gone.png:0.5"], "--image-prompt 'gone.png' does not exist"),
        ("castle", ["--schedule", "soon=dragon"], "--schedule"),
        ("castle", ["--model", "nosuch"], "unknown VQGAN model 'nosuch'"),
        ("castle", ["--clip-model", "nosuch"], "unknown CLIP model 'nosuch'"),
        ("castle", ["-o", "castle.jpg"], "must end in .png"),
        ("castle", ["--video", "castle.gif"], "--video 'castle.gif' must end in .mp4"),
        ("", [], "give a text prompt or at least one --image-prompt"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    runner: CliRunner, prompt: str, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["generate", prompt, *TINY, "--iterations", "1", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_image_prompt_only_generation(runner: CliRunner, tmp_path: Path) -> None:
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    output = tmp_path / "from-image.png"
    args = ["generate", "", "-o", str(output), *TINY, "--iterations", "1"]
    args += ["--image-prompt", "red.png:0.5", "--init-image", "red.png", "--init-weight", "0.5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    params = json.loads(Image.open(output).text["parameters"])
    assert params["image_prompts"] == ["red.png"] and params["image_prompt_weights"] == [0.5]
    assert params["init_image"] == "red.png" and params["init_weight"] == 0.5


def test_a_device_that_is_not_one_is_refused_in_one_line(runner: CliRunner) -> None:
    tiny = [arg for arg in TINY if arg != "cpu" and arg != "--device"]
    result = runner.invoke(app, ["generate", "castle", *tiny, "--device", "toaster"])
    assert result.exit_code == 2
    assert "error: --device 'toaster' is not a device; use auto, cpu" in result.output
