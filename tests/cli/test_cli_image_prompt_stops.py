"""artgen generate --image-prompt FILE:WEIGHT:STOP (the seed's image prompt syntax)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from artgen.cli import app

TINY = ["--model", "tiny", "--size", "32", "32", "--cutn", "2", "--device", "cpu"]


def recorded(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text["parameters"])


def test_image_prompt_stops_are_used_recorded_and_rerun(runner: CliRunner, tmp_path: Path) -> None:
    Image.new("RGB", (40, 20), (200, 30, 30)).save(tmp_path / "red.png")
    Image.new("RGB", (20, 20), (30, 30, 200)).save(tmp_path / "blue.png")
    args = ["generate", "", "-o", "first.png", *TINY, "--iterations", "1"]
    args += ["--image-prompt", "red.png:0.5:0.1", "--image-prompt", "blue.png:2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    params = recorded(tmp_path / "first.png")
    assert params["image_prompts"] == ["red.png", "blue.png"]
    assert params["image_prompt_weights"] == [0.5, 2.0]
    assert params["image_prompt_stops"] == [0.1, None]

    result = runner.invoke(app, ["generate", "-o", "again.png", "--params-from", "first.png"])
    assert result.exit_code == 0, result.output
    assert recorded(tmp_path / "again.png")["image_prompt_stops"] == [0.1, None]

    # New image prompts replace the recorded stops.
    args = ["generate", "-o", "third.png", "--params-from", "first.png"]
    result = runner.invoke(app, [*args, "--image-prompt", "blue.png"])
    assert result.exit_code == 0, result.output
    assert recorded(tmp_path / "third.png")["image_prompt_stops"] == []


def test_a_bad_image_prompt_stop_is_refused_clearly(runner: CliRunner, tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "red.png")
    args = ["generate", "", "-o", "x.png", *TINY, "--image-prompt", "red.png:1:inf"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--image-prompt" in result.output and "finite" in result.output
    assert "Traceback" not in result.output
