"""The random draws of one batch of cutouts (CutoutParams), from the job's generator only.

Where each cutout is cut, at what size, and which of the seed notebook's augmentations it gets
(kornia 0.9's probabilities and ranges): the reference and fast cutouts (cutouts.py) apply the same
draws, so the fast path can be checked against the reference on identical randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

FLIP_P = 0.5
SHARPNESS_P, SHARPNESS_MAX = 0.4, 0.3
AFFINE_P, AFFINE_DEGREES, AFFINE_TRANSLATE = 0.8, 30.0, 0.1
PERSPECTIVE_P, PERSPECTIVE_SCALE = 0.4, 0.2
JITTER_P, JITTER_HUE, JITTER_SATURATION = 0.7, 0.01, 0.01
NOISE_MAX = 0.1


@dataclass
class CutoutParams:
    """Everything random about one batch of cutouts (n cutouts, side S), as device tensors.

    Geometric maps use the cutout's [-1, 1] coordinates with align_corners: N takes pixel centres
    0 and S - 1 to -1 and 1, so a kornia pixel-space warp M (source -> destination) is N M^-1 N^-1.
    """

    sizes: Tensor  # (n,) crop side in image pixels (whole numbers)
    offsets: Tensor  # (n, 2) crop top-left (x, y) in image pixels (whole numbers)
    flips: Tensor  # (n,) bool: mirror horizontally
    sharpen: Tensor  # (n,) bool: blend with the 3x3-smoothed copy (clamped to [0, 1], as kornia)
    sharpness: Tensor  # (n,) blend factor: 0 the smoothed copy, 1 the cutout unchanged
    affines: Tensor  # (n, 3, 3) output -> input map; samples outside repeat the edge
    perspectives: Tensor  # (n, 3, 3) output -> input homography; samples outside are black
    jitter: Tensor  # (n,) bool: colour jitter applied (clamped to [0, 1] before and after)
    hue_first: Tensor  # (n,) bool: hue shift before saturation (kornia draws one order per call)
    hues: Tensor  # (n,) hue shift in radians
    saturations: Tensor  # (n,) saturation factor (blend with the luma grey)
    noise: Tensor  # (n, 3, S, S) additive noise, already scaled per cutout


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """n uniform samples in [low, high) from `generator` on its device."""
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def _square_to_quad(quad: Tensor) -> Tensor:
    """Homographies (n, 3, 3) taking the unit square's corners to `quad` (n, 4, 2) (Heckbert).

    Corners in order (0, 0), (1, 0), (1, 1), (0, 1). Closed form: no solver, so no host sync.
    """
    x0, x1, x2, x3 = quad[:, 0, 0], quad[:, 1, 0], quad[:, 2, 0], quad[:, 3, 0]
    y0, y1, y2, y3 = quad[:, 0, 1], quad[:, 1, 1], quad[:, 2, 1], quad[:, 3, 1]
    sum_x, sum_y = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    denominator = dx1 * dy2 - dx2 * dy1
    g = (sum_x * dy2 - dx2 * sum_y) / denominator
    h = (dx1 * sum_y - sum_x * dy1) / denominator
    rows = [
        [x1 - x0 + g * x1, x3 - x0 + h * x3, x0],
        [y1 - y0 + g * y1, y3 - y0 + h * y3, y0],
        [g, h, torch.ones_like(g)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=1)


def _inverse_homography(matrices: Tensor) -> Tensor:
    """Inverse of homographies (n, 3, 3) via the adjugate, scaled so the last entry is 1."""
    r0, r1, r2 = matrices[:, 0], matrices[:, 1], matrices[:, 2]
    adjugate = torch.stack(
        [torch.linalg.cross(r1, r2), torch.linalg.cross(r2, r0), torch.linalg.cross(r0, r1)],
        dim=-1,
    )
    return adjugate / adjugate[:, 2:3, 2:3]


def _perspective_maps(moved: Tensor) -> Tensor:
    """Output -> input maps (n, 3, 3) of warps sending the corners of [-1, 1]^2 to `moved`."""
    # The warp is square_to_quad(moved) after [-1, 1] -> [0, 1]; its inverse ends with
    # [0, 1] -> [-1, 1] (the matrix built on the device, not copied from the host).
    from_unit = torch.eye(3, device=moved.device) * 2.0
    from_unit[:2, 2], from_unit[2, 2] = -1.0, 1.0
    inverse = from_unit @ _inverse_homography(_square_to_quad(moved))  # (n, 3, 3)
    return inverse / inverse[:, 2:3, 2:3]


def sample_cutout_params(
    image_size: tuple[int, int],
    cutn: int,
    cut_size: int,
    cut_pow: float,
    augment: bool,
    generator: torch.Generator,
) -> CutoutParams:
    """Draw sizes, offsets and augmentations of `cutn` cutouts of an (H, W) image.

    The distributions are the seed's (kornia's, in pixels of the S-pixel cutout); the draws come
    from `generator` in an order of our own.
    """
    height, width = image_size
    device = generator.device
    max_size = min(width, height)
    min_size = min(width, height, cut_size)
    # The seed: size = rand ** cut_pow * (max - min) + min, offsets uniform over valid positions.
    sizes = (_uniform(cutn, 0, 1, generator) ** cut_pow * (max_size - min_size) + min_size).floor()
    sizes = sizes.clamp(max=max_size)
    offset_x = (_uniform(cutn, 0, 1, generator) * (width - sizes + 1)).floor()
    offset_y = (_uniform(cutn, 0, 1, generator) * (height - sizes + 1)).floor()
    offsets = torch.stack([offset_x, offset_y], dim=1)
    eye = torch.eye(3, device=device).expand(cutn, 3, 3)
    never = torch.zeros(cutn, dtype=torch.bool, device=device)
    ones = torch.ones(cutn, device=device)
    if not augment:
        return CutoutParams(
            sizes=sizes,
            offsets=offsets,
            flips=never,
            sharpen=never,
            sharpness=ones,
            affines=eye.clone(),
            perspectives=eye.clone(),
            jitter=never,
            hue_first=never,
            hues=torch.zeros(cutn, device=device),
            saturations=ones,
            noise=torch.zeros(cutn, 3, cut_size, cut_size, device=device),
        )
    # kornia's pixel distances in the [-1, 1] frame: one pixel is 2 / (S - 1).
    pixel = 2 / max(cut_size - 1, 1)
    flips = _uniform(cutn, 0, 1, generator) < FLIP_P

    sharpen = _uniform(cutn, 0, 1, generator) < SHARPNESS_P
    sharpness = torch.where(sharpen, _uniform(cutn, 0, SHARPNESS_MAX, generator), ones)

    # Affine: rotate about the centre, then translate by up to AFFINE_TRANSLATE of the side.
    affine_on = (_uniform(cutn, 0, 1, generator) < AFFINE_P).float()
    angles = _uniform(cutn, -1, 1, generator) * math.radians(AFFINE_DEGREES) * affine_on
    shifts = torch.stack(
        [_uniform(cutn, -1, 1, generator), _uniform(cutn, -1, 1, generator)], dim=1
    ) * (AFFINE_TRANSLATE * cut_size * pixel * affine_on[:, None])
    cos, sin = angles.cos(), angles.sin()
    # Sampling map (output -> input) is the inverse of "rotate, then shift": R^T (p - t).
    affines = eye.clone()
    affines[:, 0, 0], affines[:, 0, 1] = cos, -sin
    affines[:, 1, 0], affines[:, 1, 1] = sin, cos
    affines[:, :2, 2] = -(affines[:, :2, :2] @ shifts.unsqueeze(-1)).squeeze(-1)

    # Perspective: each corner moves inward by up to PERSPECTIVE_SCALE of the half side.
    perspective_on = (_uniform(cutn, 0, 1, generator) < PERSPECTIVE_P).float()
    corners = _corners(device)
    inward = -corners
    moves = torch.rand(cutn, 4, 2, generator=generator, device=device)
    moves = moves * (PERSPECTIVE_SCALE * cut_size / 2 * pixel)
    moved = corners + inward * moves * perspective_on[:, None, None]
    perspectives = _perspective_maps(moved)

    # Colour jitter: kornia's ColorJitter draws one order of its steps per call.
    jitter = _uniform(cutn, 0, 1, generator) < JITTER_P
    hue_first = (_uniform(1, 0, 1, generator) < 0.5).expand(cutn)
    on = jitter.float()
    hues = _uniform(cutn, -JITTER_HUE, JITTER_HUE, generator) * 2 * math.pi * on
    saturations = 1 + _uniform(cutn, -JITTER_SATURATION, JITTER_SATURATION, generator) * on

    noise_levels = _uniform(cutn, 0, NOISE_MAX, generator)
    noise = torch.randn(cutn, 3, cut_size, cut_size, generator=generator, device=device)
    noise = noise * noise_levels[:, None, None, None]
    return CutoutParams(
        sizes=sizes,
        offsets=offsets,
        flips=flips,
        sharpen=sharpen,
        sharpness=sharpness,
        affines=affines,
        perspectives=perspectives,
        jitter=jitter,
        hue_first=hue_first,
        hues=hues,
        saturations=saturations,
        noise=noise,
    )


def _corners(device: torch.device) -> Tensor:
    """The corners (4, 2) of [-1, 1]^2, clockwise from top-left, made on the device (no copy)."""
    index = torch.arange(4, device=device)
    x = ((index + 1) // 2 % 2) * 2 - 1  # -1, 1, 1, -1
    y = (index // 2) * 2 - 1  # -1, -1, 1, 1
    return torch.stack([x, y], dim=1).float()
