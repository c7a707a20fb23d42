"""CLIP critics: the tiny preset, normalisation inside, OpenAI-format weight files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from artgen.models.checkpoints import CheckpointError
from artgen.models.clip import (
    OPENAI_DATASET_MEAN,
    OPENAI_DATASET_STD,
    Critic,
    _openai_state_dict,
    load_openai_weights,
    openai_critic,
    tiny_critic,
)


def test_tiny_critic_shapes_and_dtypes(tiny_models) -> None:
    critic = tiny_models.critics[0]
    assert critic.name == "tiny"
    assert critic.cut_size == 64
    with torch.no_grad():
        text = critic.encode_text(["a castle in the clouds", "fog", ""])
        image = critic.encode_image(torch.rand(5, 3, 64, 64))
    assert text.shape == (3, 64) and text.dtype == torch.float32
    assert image.shape == (5, 64) and image.dtype == torch.float32
    assert not critic.training
    assert not any(p.requires_grad for p in critic.parameters())


def test_encode_image_applies_clip_normalisation(tiny_models) -> None:
    critic = tiny_models.critics[0]
    images = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = critic.model.encode_image((images - mean) / std)
        assert torch.allclose(critic.encode_image(images), expected, atol=1e-6)


def test_gradients_flow_to_images_and_autocast_works(tiny_models) -> None:
    critic = tiny_models.critics[0]
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    critic.encode_image(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic.encode_image(torch.rand(1, 3, 64, 64)).dtype == torch.float32
        assert critic.encode_text(["x"]).dtype == torch.float32


def test_tiny_critic_is_deterministic_and_leaves_global_rng_alone(tiny_models) -> None:
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    again = tiny_critic()
    assert torch.equal(torch.rand(1), expected)
    for key, value in tiny_models.critics[0].state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def write_torchscript_archive(critic: Critic, path: Path) -> None:
    """OpenAI ships CLIP as a TorchScript archive of the whole model; make a tiny one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace_module(
            critic.model, {"encode_image": torch.rand(1, 3, 64, 64)}, check_trace=False
        )
    scripted.save(str(path))


def test_openai_torchscript_archive_weights_load(tiny_models, tmp_path: Path) -> None:
    source = tiny_critic(seed=1)
    archive = tmp_path / "ViT-tiny.pt"
    write_torchscript_archive(source, archive)
    target = tiny_critic(seed=2)
    load_openai_weights(target.model, archive, archive)
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(target.encode_image(images), source.encode_image(images))
        assert torch.allclose(target.encode_text(["hi"]), source.encode_text(["hi"]))


def test_plain_state_dict_file_is_read_safely(tmp_path: Path) -> None:
    source = tiny_critic(seed=1)
    path = tmp_path / "clip.pt"
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in source.model.state_dict().items()}}, path
    )
    state = _openai_state_dict(path)
    assert state.keys() == source.model.state_dict().keys() - {"attn_mask"}


def test_wrong_architecture_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="other.pt: does not fit"):
        load_openai_weights(tiny_critic().model, path, path)


def test_openai_critic_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.pt: no such file"):
        openai_critic(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        openai_critic(corrupt)
