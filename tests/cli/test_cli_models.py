"""`artgen models list | download | add` over an isolated model cache."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from artgen.cli import app
from artgen.models.presets import tiny_vqgan


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
    # The table fits 100 columns; the cache line is as long as its (temporary) path.
    table = [line for line in lines if "weights cache:" not in line]
    assert max(len(line.rstrip()) for line in table) <= 100
    rows = {tuple(line.split()[:2]): line.split() for line in lines if len(line.split()) > 3}
    assert rows[("wikiart_16384", "vqgan")][2:4] == ["no", "yes"]
    assert "1.0 GB" in " ".join(rows[("wikiart_16384", "vqgan")])
    assert rows[("tiny", "vqgan")][2] == "yes" and rows[("tiny", "clip")][2] == "yes"
    assert ("ViT-B-32/openai", "clip") in rows
    assert "weights cache:" in result.output


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
