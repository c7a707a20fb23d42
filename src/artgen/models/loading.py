"""The loaded model bundle a generation needs: one VQGAN and one or more CLIP critics."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from artgen.models.catalog import Catalog
from artgen.models.clip import Critic
from artgen.models.presets import RANDOM_CLIP, RANDOM_VQGAN, TINY
from artgen.models.vqgan import VQGAN


@dataclass
class Models:
    """Models ready for inference: eval mode, frozen, on one device.

    On CUDA load_models puts the VQGAN's weights in channels_last (what the fast path's bf16
    convolutions run fastest with); on other devices they keep the plain contiguous layout.
    Generations share the bundle and never change it; use_layout() switches it explicitly.
    """

    vqgan: VQGAN
    critics: list[Critic]  # one or more; prompt losses are summed over critics
    vqgan_name: str
    clip_names: list[str]


def load_models(vqgan: str, clips: list[str], device: torch.device, catalog: Catalog) -> Models:
    """Build the named VQGAN and critics through the catalog and move them to `device`."""
    if not clips:
        raise ValueError("load_models needs at least one CLIP model name")
    catalog.validate(vqgan, list(clips))
    autoencoder = catalog.build_vqgan(vqgan, device)
    critics = [catalog.build_critic(name, device) for name in clips]
    for module in (autoencoder, *critics):
        module.to(device).eval().requires_grad_(False)
    models = Models(autoencoder, critics, vqgan, list(clips))
    # Once here, not per generation: the bundle is shared by every generation on the device.
    use_layout(models, channels_last=torch.device(device).type == "cuda")
    return models


def use_layout(models: Models, channels_last: bool) -> None:
    """Put the VQGAN's weights in channels_last or back in the plain layout, in place.

    Changes the bundle for everyone using it: for benchmarks that measure one layout at a time.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    models.vqgan.to(memory_format=layout)


# Random-weight bundles needing no files (benchmarks): kind -> (VQGAN name, CLIP name).
RANDOM_MODELS = {
    "random-f16": (RANDOM_VQGAN, RANDOM_CLIP),  # full-size shapes: f16 16384 VQGAN + ViT-B-32
    "tiny": (TINY, TINY),
}


def random_models(kind: str, device: torch.device) -> Models:
    """A RANDOM_MODELS bundle: "random-f16" (full-size shapes) or "tiny"."""
    if kind not in RANDOM_MODELS:
        raise ValueError(f"random models {kind!r}: use {' or '.join(map(repr, RANDOM_MODELS))}")
    vqgan, critic = RANDOM_MODELS[kind]
    # No catalog files are touched for these names, so any home directory will do.
    return load_models(vqgan, [critic], device, Catalog(Path(tempfile.gettempdir())))
