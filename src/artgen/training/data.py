"""Batches of procedural pictures (and captions) as tensors, reproducible from (seed, step)."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor

from artgen.training import shapes


def step_rng(seed: int, step: int, stream: str) -> random.Random:
    """A generator for one step of one stream: resuming at `step` draws the same batch again."""
    return random.Random(f"{stream}:{seed}:{step}")


def to_tensor(images: list, device: torch.device | str = "cpu") -> Tensor:
    """PIL RGB pictures -> (B, 3, S, S) float32 in [0, 1]."""
    array = np.stack([np.asarray(image, dtype=np.uint8) for image in images])  # (B, S, S, 3)
    return torch.from_numpy(array).to(device).permute(0, 3, 1, 2).float() / 255.0


def scene_batch(
    rng: random.Random, count: int, side: int, held_out: bool = False
) -> tuple[list[shapes.Scene], Tensor]:
    """`count` random scenes and their pictures (B, 3, side, side) in [0, 1]."""
    scenes = [shapes.random_scene(rng, held_out=held_out) for _ in range(count)]
    return scenes, to_tensor([shapes.draw(scene, side, rng) for scene in scenes])
