"""Catalog: listing, missing-model messages, downloads with resume and sha256, load_models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from artgen.models import clip
from artgen.models.catalog import Catalog, UnknownModel
from artgen.models.checkpoints import CheckpointError, ModelUnavailable
from artgen.models.loading import load_models
from artgen.models.presets import DEFAULT_CLIP, DEFAULT_VQGAN, ClipPreset, VQGANPreset

PRESETS = {"wikiart_16384", "imagenet_f16_16384", "imagenet_f16_1024", "gumbel_f8_8192"}
PRESETS |= {"sflckr", "coco"}


def test_list_models_marks_defaults_and_availability(tmp_path: Path) -> None:
    rows = Catalog(tmp_path).list_models()
    vqgans = {row.name: row for row in rows if row.kind == "vqgan"}
    clips = {row.name: row for row in rows if row.kind == "clip"}
    assert vqgans.keys() >= PRESETS
    assert "tiny" in vqgans and "tiny" in clips and DEFAULT_CLIP in clips
    assert [name for name, row in vqgans.items() if row.default] == [DEFAULT_VQGAN]
    assert [name for name, row in clips.items() if row.default] == [DEFAULT_CLIP]
    assert not vqgans[DEFAULT_VQGAN].available and vqgans["tiny"].available
    assert vqgans[DEFAULT_VQGAN].size_bytes > 500_000_000


def test_missing_model_says_which_file_where_and_which_command(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    with pytest.raises(ModelUnavailable) as caught:
        catalog.build_vqgan("wikiart_16384")
    message = str(caught.value)
    assert str(tmp_path / "vqgan" / "wikiart_16384.ckpt") in message
    assert str(tmp_path / "vqgan" / "wikiart_16384.yaml") in message
    assert "`artgen models download wikiart_16384`" in message
    with pytest.raises(ModelUnavailable) as caught:
        catalog.build_critic("ViT-B-32/openai")
    assert str(tmp_path / "clip" / "ViT-B-32-openai.pt") in str(caught.value)
    assert "`artgen models download ViT-B-32/openai`" in str(caught.value)


def test_unknown_names(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    with pytest.raises(UnknownModel, match="unknown VQGAN model 'nope'"):
        catalog.validate("nope", ["tiny"])
    with pytest.raises(UnknownModel, match="unknown CLIP model 'ViT-B-32/nope'"):
        catalog.validate("tiny", ["ViT-B-32/nope"])
    catalog.validate("wikiart_16384", ["ViT-B-32/openai", "tiny", "ViT-B-16/openai"])
    with pytest.raises(UnknownModel):
        catalog.download("nope")


def test_download_resumes_a_partial_file_and_records_sha256(tmp_path: Path, server) -> None:
    config_text = b"model: {}\n"
    checkpoint = bytes(range(256)) * 3000  # 768 kB
    server.files = {"/m.yaml": config_text, "/m.ckpt": checkpoint}
    preset = VQGANPreset("m", f"{server.url}/m.yaml", f"{server.url}/m.ckpt", len(checkpoint), "")
    catalog = Catalog(tmp_path, vqgan_presets={"m": preset})
    target = tmp_path / "vqgan" / "m.ckpt"
    target.parent.mkdir(parents=True)
    (tmp_path / "vqgan" / "m.ckpt.part").write_bytes(checkpoint[:100_000])
    seen: list[tuple[str, int, int | None]] = []
    paths = catalog.download(
        "m", progress=lambda name, done, total: seen.append((name, done, total))
    )
    assert paths == [tmp_path / "vqgan" / "m.yaml", target]
    assert target.read_bytes() == checkpoint
    assert not (tmp_path / "vqgan" / "m.ckpt.part").exists()
    assert "bytes=100000-" in server.ranges
    assert seen[-1] == ("m.ckpt", len(checkpoint), len(checkpoint))
    assert any(name == "m.ckpt" and done == 100_000 for name, done, _ in seen)
    hashes = json.loads((tmp_path / "hashes.json").read_text())
    assert hashes["vqgan/m.ckpt"] == hashlib.sha256(checkpoint).hexdigest()
    assert next(row for row in catalog.list_models() if row.name == "m").available
    # Present files are not fetched again.
    requests = len(server.ranges)
    catalog.download("m")
    assert len(server.ranges) == requests


def test_sha256_mismatch_after_redownload_is_an_error(tmp_path: Path, server) -> None:
    server.files = {"/w.pt": b"first version"}
    preset = ClipPreset("w/openai", "ViT-B-32-quickgelu", f"{server.url}/w.pt", "w.pt", 13, "")
    catalog = Catalog(tmp_path, clip_presets={"w/openai": preset})
    (path,) = catalog.download("w/openai")
    path.unlink()
    server.files["/w.pt"] = b"tampered version"
    with pytest.raises(CheckpointError, match="sha256 mismatch") as caught:
        catalog.download("w/openai")
    assert str(path) in str(caught.value)
    assert not path.exists() and not path.with_name("w.pt.part").exists()


def test_known_sha256_is_checked_on_first_download(tmp_path: Path, server) -> None:
    server.files = {"/w.pt": b"payload"}
    digest = hashlib.sha256(b"other").hexdigest()
    preset = ClipPreset("w/x", "ViT-B-32", f"{server.url}/w.pt", "w.pt", 7, "", digest)
    with pytest.raises(CheckpointError, match=f"expected {digest}"):
        Catalog(tmp_path, clip_presets={"w/x": preset}).download("w/x")


def test_open_clip_download_failure_is_model_unavailable(tmp_path: Path, monkeypatch) -> None:
    import open_clip

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Failed to download weights for tag 'laion2b_s34b_b79k': offline")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ModelUnavailable, match="ViT-B-32/laion2b_s34b_b79k could not be loaded"):
        Catalog(tmp_path).build_critic("ViT-B-32/laion2b_s34b_b79k")


def test_load_models_tiny(tmp_path: Path) -> None:
    models = load_models("tiny", ["tiny", "tiny"], torch.device("cpu"), Catalog(tmp_path))
    assert models.vqgan_name == "tiny" and models.clip_names == ["tiny", "tiny"]
    assert len(models.critics) == 2 and isinstance(models.critics[0], clip.Critic)
    for module in (models.vqgan, *models.critics):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="at least one"):
        load_models("tiny", [], torch.device("cpu"), Catalog(tmp_path))
    with pytest.raises(ModelUnavailable, match="artgen models download wikiart_16384"):
        load_models("wikiart_16384", ["tiny"], torch.device("cpu"), Catalog(tmp_path))
