"""Conversions between PIL images and (1, 3, H, W) float tensors in [0, 1]; no file I/O."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_pil(image: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor in [0, 1] -> RGB PIL image (values clamped, rounded)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"to_pil takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"to_pil expects (3, H, W), got {tuple(image.shape)}")
    return Image.fromarray(to_pixels(image).cpu().numpy(), mode="RGB")


def to_pixels(image: Tensor) -> Tensor:
    """(1, 3, H, W) or (3, H, W) tensor in [0, 1] -> (H, W, 3) uint8 on the same device."""
    if image.dim() == 4:
        image = image[0]
    pixels = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return pixels.permute(1, 2, 0)


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """RGB copy of `image` resized to (width, height) with LANCZOS."""
    image = image.convert("RGB")
    if image.size == tuple(size):
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def fit_area(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """RGB copy of `image` with its aspect ratio kept and its area capped at width x height
    (never enlarged), LANCZOS: the seed's resize_image for image prompts."""
    image = image.convert("RGB")
    ratio = image.width / image.height
    area = min(image.width * image.height, size[0] * size[1])
    target = (max(1, round((area * ratio) ** 0.5)), max(1, round((area / ratio) ** 0.5)))
    return resize(image, target)


def from_pil(image: Image.Image, size: tuple[int, int] | None = None) -> Tensor:
    """PIL image -> (1, 3, H, W) float32 tensor in [0, 1], resized to (width, height) if given."""
    image = resize(image, size) if size is not None else image.convert("RGB")
    pixels = np.asarray(image, dtype=np.uint8).copy()  # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float().div(255)
