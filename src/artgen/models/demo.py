"""The `demo` models shipped inside the package: a small VQGAN and CLIP trained on drawn shapes.

They were trained by `python -m artgen.training.demo` (see docs/demo-models.md) and are loaded
like any downloaded model: the VQGAN through the taming checkpoint loader, strictly, and the CLIP
as open_clip's CLIP from its config, strictly. Every file is checked against its sha256 first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch

from artgen.models import clip
from artgen.models.checkpoints import CheckpointError, load_vqgan
from artgen.models.downloads import sha256_file
from artgen.models.vqgan import VQGAN

VQGAN_CONFIG = "vqgan.yaml"
VQGAN_CHECKPOINT = "vqgan.ckpt"
CLIP_CONFIG = "clip.json"
CLIP_WEIGHTS = "clip.pt"
RETRAIN = "python -m artgen.training.demo --out src/artgen/models/demo"


def demo_dir() -> Path:
    """Where the package keeps the demo model files."""
    return Path(str(resources.files("artgen.models").joinpath("demo")))


def checked_file(name: str, sha256: Mapping[str, str], directory: Path | None = None) -> Path:
    """The path of one demo file, after checking that it exists and has the catalog's sha256."""
    path = (directory or demo_dir()) / name
    if not path.is_file():
        raise CheckpointError(
            f"{path}: the demo model file is missing; reinstall artgen or retrain with `{RETRAIN}`"
        )
    digest = sha256_file(path)
    if digest != sha256[name]:
        raise CheckpointError(
            f"{path}: sha256 {digest} is not the catalog's {sha256[name]}; the file was changed "
            f"or retrained: reinstall artgen, or record the new digest in DEMO_SHA256"
        )
    return path


def config_critic(
    config_path: Path, weights_path: Path, name: str, device: torch.device | str = "cpu"
) -> clip.Critic:
    """open_clip's CLIP built from a JSON model config, with a state-dict file loaded strictly.

    The config is open_clip's own format (`embed_dim`, `vision_cfg`, `text_cfg`); the tokenizer
    is the bundled BPE one at the text tower's context length.
    """
    import open_clip  # seconds to import; the catalog imports this module to list models

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        context_length = int(config["text_cfg"].get("context_length", 77))
        with torch.random.fork_rng(devices=[]):
            model = open_clip.model.CLIP(**config)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{config_path}: not an open_clip model config ({error})") from None
    clip.load_openai_weights(model, weights_path, weights_path)
    tokenizer = open_clip.get_tokenizer(clip.BUNDLED_TOKENIZER, context_length=context_length)
    return clip.Critic(name, model, tokenizer).to(device).eval().requires_grad_(False)


def demo_vqgan(sha256: Mapping[str, str], device: torch.device | str = "cpu") -> VQGAN:
    """The demo VQGAN (f8, 512 codes), checked and loaded strictly."""
    return load_vqgan(
        checked_file(VQGAN_CONFIG, sha256), checked_file(VQGAN_CHECKPOINT, sha256), device
    )


def demo_critic(sha256: Mapping[str, str], device: torch.device | str = "cpu") -> clip.Critic:
    """The demo CLIP (64 px), checked and loaded strictly."""
    return config_critic(
        checked_file(CLIP_CONFIG, sha256), checked_file(CLIP_WEIGHTS, sha256), "demo", device
    )


def total_bytes() -> int:
    """Size of the demo files on disk."""
    names = (VQGAN_CONFIG, VQGAN_CHECKPOINT, CLIP_CONFIG, CLIP_WEIGHTS)
    return sum((demo_dir() / name).stat().st_size for name in names)
