"""Camera motion between animation frames: zoom, rotation, translation; reflect padding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def warp(
    image: Tensor,
    *,
    zoom: float = 1.0,
    angle: float = 0.0,
    translate_x: float = 0.0,
    translate_y: float = 0.0,
) -> Tensor:
    """Move the picture: (B, 3, H, W) in [0, 1] -> the same shape.

    `zoom` > 1 zooms in about the centre, `angle` turns the content counter-clockwise in degrees,
    `translate_x`/`translate_y` move it in pixels (+x right, +y down). Pixels that come from
    outside the frame are mirrored back in (reflect padding), so no black borders appear.
    """
    if image.dim() != 4:
        raise ValueError(f"warp expects a (B, 3, H, W) batch, got {tuple(image.shape)}")
    if not zoom > 0 or not math.isfinite(zoom):
        raise ValueError(f"zoom must be a positive number, got {zoom}")
    if zoom == 1.0 and angle == 0.0 and translate_x == 0.0 and translate_y == 0.0:
        return image.clone()
    batch, _, height, width = image.shape
    theta = _sampling_matrix(width, height, zoom, angle, translate_x, translate_y)
    theta = theta.to(device=image.device, dtype=torch.float32).expand(batch, 2, 3)
    grid = F.affine_grid(theta, [batch, 3, height, width], align_corners=False)
    warped = F.grid_sample(
        image.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return warped.clamp(0, 1).to(image.dtype)


def _sampling_matrix(
    width: int, height: int, zoom: float, angle: float, translate_x: float, translate_y: float
) -> Tensor:
    """The (1, 2, 3) affine_grid matrix that maps each output position to where it samples from.

    In pixel coordinates about the centre (y down) the content moves by p = zoom * R q + t, R a
    counter-clockwise turn on screen; sampling needs the inverse, q = R^-1 (p - t) / zoom, written
    in affine_grid's normalised coordinates (x / (W/2), y / (H/2)).
    """
    radians = math.radians(angle)
    cos, sin = math.cos(radians), math.sin(radians)
    # R^-1 on screen (y down): a clockwise turn.
    inverse = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) / zoom
    offset = -inverse @ torch.tensor([translate_x, translate_y], dtype=torch.float64)
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    linear = inverse * half[None, :] / half[:, None]  # S^-1 A S
    shift = offset / half  # S^-1 b
    return torch.cat([linear, shift[:, None]], dim=1)[None].float()
