"""The `artgen` command line end to end on CPU with the tiny models (32x32, cutn 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from artgen.api import server
from artgen.cli import app
from artgen.jobs import hosting
from artgen.models.presets import tiny_vqgan

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


def test_missing_model_names_the_file_and_the_download_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["generate", "castle", "--model", "wikiart_16384", "-o", "x.png"])
    assert result.exit_code == 2, result.output
    assert "wikiart_16384.ckpt" in result.output
    assert "artgen models download wikiart_16384" in result.output
    assert "Traceback" not in result.output


def test_models_list_shows_presets_and_availability(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    rows = {tuple(line.split()[:2]): line.split() for line in lines if len(line.split()) > 3}
    assert rows[("wikiart_16384", "vqgan")][2:4] == ["no", "yes"]
    assert "1.0 GB" in " ".join(rows[("wikiart_16384", "vqgan")])
    assert rows[("tiny", "vqgan")][2] == "yes" and rows[("tiny", "clip")][2] == "yes"
    assert ("ViT-B-32/openai", "clip") in rows
    assert "weights cache:" in result.output


def test_help_shows_no_bool_labels_and_the_defaults(runner: CliRunner) -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "--help" in top.output
    for command in (["generate"], ["serve"], ["worker"], ["bench"], ["models", "list"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output and "list[str]" not in result.output, command
    assert "<bool>" not in top.output
    generate = runner.invoke(app, ["generate", "--help"]).output
    assert "--size W H" in generate and "(default 256 256)" in generate
    assert "--augment / --no-augment" in generate
    serve = runner.invoke(app, ["serve", "--help"]).output
    assert "(default ./artgen-data" in " ".join(serve.split())


def test_models_download_of_a_builtin_and_of_an_unknown_name(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models", "download", "tiny"])
    assert result.exit_code == 0 and "needs no download" in result.output
    result = runner.invoke(app, ["models", "download", "nosuch"])
    assert result.exit_code == 2 and "not a downloadable model" in result.output


def test_models_download_shows_progress_and_the_files(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from artgen.models.catalog import Catalog

    calls = []

    def fake_download(self: Catalog, name: str, progress=None) -> list[Path]:
        calls.append((self.home, name))
        for done in (0, 512, 1024):
            progress("wikiart_16384.ckpt", done, 1024)
        return [self.home / "vqgan" / "wikiart_16384.ckpt"]

    # The network is the catalog's business; this checks the CLI's wiring around it.
    monkeypatch.setattr(Catalog, "download", fake_download)
    result = runner.invoke(app, ["models", "download", "wikiart_16384"])
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path / "home", "wikiart_16384")]
    assert "wikiart_16384.ckpt" in result.output and "ready:" in result.output


def test_models_add_registers_a_real_format_checkpoint(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(
        resources.files("artgen.models").joinpath("configs", "tiny.yaml").read_text("utf-8")
    )
    checkpoint = tmp_path / "mine.ckpt"
    # Lightning's layout: the weights under "state_dict", beside other training state.
    torch.save({"state_dict": tiny_vqgan().state_dict(), "global_step": 1}, checkpoint)

    args = ["models", "add", "mine", "--config", str(config), "--checkpoint", str(checkpoint)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "added mine" in result.output
    listed = runner.invoke(app, ["models", "list"])
    row = next(line.split() for line in listed.output.splitlines() if line.startswith("mine "))
    assert row[:3] == ["mine", "vqgan", "yes"]

    output = tmp_path / "mine.png"
    args = ["generate", "fog", "--model", "mine", "--clip-model", "tiny", "-o", str(output)]
    result = runner.invoke(app, [*args, "--size", "32", "32", "--cutn", "2", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(Image.open(output).text["parameters"])["model"] == "mine"


def test_models_add_rejects_bad_files(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(
        resources.files("artgen.models").joinpath("configs", "tiny.yaml").read_text("utf-8")
    )
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    args = ["models", "add", "mine", "--config", str(config), "--checkpoint", str(broken)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "broken.ckpt" in result.output
    assert "Traceback" not in result.output
    args = ["models", "add", "mine", "--config", "nope.yaml", "--checkpoint", str(broken)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--config 'nope.yaml' does not exist" in result.output


def test_bench_quick_writes_json(runner: CliRunner, tmp_path: Path) -> None:
    args = ["bench", "--model", "tiny", "--quick", "--sizes", "32", "--cutn", "2"]
    args += ["--iterations", "1", "--warmup", "0", "--device", "cpu", "--output-dir", "results"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "results").glob("cpu-*.json")
    data = json.loads(written.read_text())
    assert data["device"] == "cpu" and data["torch_version"] == torch.__version__
    assert data["config"]["sizes"] == [32] and data["config"]["cutn"] == 2
    paths = [case["path"] for case in data["cases"]]
    assert paths == ["reference", "fast"]
    for case in data["cases"]:
        assert case["error"] is None and case["ms_per_iteration"] > 0
        assert case["peak_memory_bytes"] > 0
    (speedup,) = data["speedups"]
    expected = speedup["reference_ms"] / speedup["fast_ms"]
    assert speedup["size"] == 32 and speedup["speedup"] == pytest.approx(expected)
    assert "reference" in result.output and "fast" in result.output


def test_bench_rejects_bad_options(runner: CliRunner) -> None:
    result = runner.invoke(app, ["bench", "--sizes", "64,big"])
    assert result.exit_code == 2 and "--sizes" in result.output
    result = runner.invoke(app, ["bench", "--paths", "reference,warp"])
    assert result.exit_code == 2 and "unknown path 'warp'" in result.output


def test_serve_flags_override_environment(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = []
    monkeypatch.setattr(server, "serve", seen.append)
    monkeypatch.setenv("ARTGEN_PORT", "9000")
    monkeypatch.setenv("ARTGEN_HOST", "0.0.0.0")
    args = ["serve", "--port", "8123", "--data-dir", str(tmp_path / "data"), "--model", "tiny"]
    args += ["--clip-model", "tiny", "--clip-model", "random_vit_b_32", "--no-worker"]
    args += ["--queue", "redis://localhost:6379/0", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.port, settings.host) == (8123, "0.0.0.0")
    assert settings.data_dir == tmp_path / "data" and settings.worker is False
    assert settings.resolved_clip_models == ["tiny", "random_vit_b_32"]
    assert settings.queue_url == "redis://localhost:6379/0" and settings.device == "cpu"


def test_worker_builds_settings_and_passes_the_exit_code(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr(hosting, "run_worker", lambda settings: seen.append(settings) or 3)
    args = ["worker", "--queue", "redis://gpu-queue:6379/1", "--device", "cpu", "--model", "tiny"]
    args += ["--batch-jobs", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    (settings,) = seen
    assert settings.queue_url == "redis://gpu-queue:6379/1" and settings.model == "tiny"
    assert settings.batch_jobs == 4
    assert settings.resolved_clip_models == ["tiny"]


def test_python_dash_m_artgen_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "artgen", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("generate", "models", "serve", "worker", "bench"):
        assert command in result.stdout


def test_a_device_that_is_not_one_is_refused_in_one_line(runner: CliRunner) -> None:
    tiny = [arg for arg in TINY if arg != "cpu" and arg != "--device"]
    result = runner.invoke(app, ["generate", "castle", *tiny, "--device", "toaster"])
    assert result.exit_code == 2
    assert "error: --device 'toaster' is not a device; use auto, cpu" in result.output
