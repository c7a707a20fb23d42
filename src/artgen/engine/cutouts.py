"""Random cutouts + augmentations of the image that CLIP judges: a plain reference and a fast path.

Both paths apply the same `CutoutParams` (cutout_params.py: drawn from the job's generator, never
the global RNG), so the fast path can be checked against the reference on identical randomness.
The reference follows the seed notebook's kornia pipeline, in its order and with kornia 0.9's
formulas (checked against kornia's own modules in tests/engine/test_seed_parity.py): horizontal
flip (p 0.5), sharpness 0.3 (p 0.4), affine with rotation 30 deg / translation 0.1 and border
padding (p 0.8), perspective 0.2 with zero padding (p 0.4), colour jitter hue/saturation 0.01
(p 0.7), then noise up to 0.1.
"""

from __future__ import annotations

import math

import kornia.enhance
import torch
import torch.nn.functional as F
from torch import Tensor

from artgen.engine.cutout_params import CutoutParams, sample_cutout_params

# kornia's rgb_to_grayscale weights (ITU-R BT.601), which its saturation blends toward.
LUMA = (0.299, 0.587, 0.114)


def _sinc(x: Tensor) -> Tensor:
    return torch.where(x != 0, torch.sin(math.pi * x) / (math.pi * x), torch.ones_like(x))


def lanczos_kernel(ratio: float, lobes: int = 2) -> Tensor:
    """1-D Lanczos low-pass for downscaling by `ratio` (< 1), sampled at input pixel spacing."""
    half = math.ceil(lobes / ratio + 1)
    positions = torch.arange(-half + 1, half, dtype=torch.float64) * ratio
    kernel = torch.where(positions.abs() < lobes, _sinc(positions) * _sinc(positions / lobes), 0.0)
    return (kernel / kernel.sum()).float()


def resample(image: Tensor, size: int) -> Tensor:
    """The seed's resize: Lanczos pre-filter when shrinking, then bicubic (align_corners)."""
    _, _, height, width = image.shape
    # Filter each axis by its own ratio, as the seed does.
    if size < height:
        image = _lowpass_axis(image, lanczos_kernel(size / height).to(image.device), dim=2)
    if size < width:
        image = _lowpass_axis(image, lanczos_kernel(size / width).to(image.device), dim=3)
    return F.interpolate(image, (size, size), mode="bicubic", align_corners=True)


def _lowpass_axis(image: Tensor, kernel: Tensor, dim: int) -> Tensor:
    """1-D low-pass `kernel` along one axis (2: height, 3: width) with reflect padding."""
    kernel = kernel.to(image.dtype)
    pad = (kernel.shape[0] - 1) // 2
    batch, channels, height, width = image.shape
    flat = image.reshape(batch * channels, 1, height, width)
    length = height if dim == 2 else width
    mode = "reflect" if pad < length else "replicate"
    if dim == 2:
        flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode), kernel[None, None, :, None])
    else:
        flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode), kernel[None, None, None, :])
    return flat.view(batch, channels, height, width)


def _base_grid(size: int, device: torch.device) -> Tensor:
    """Homogeneous output coordinates (S*S, 3) in [-1, 1] (align_corners convention), x fastest."""
    line = torch.linspace(-1, 1, size, device=device)
    grid_y, grid_x = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).view(-1, 3)


def _apply_map(points: Tensor, matrices: Tensor) -> Tensor:
    """Apply (n, 3, 3) homographies to homogeneous points (n, P, 3) -> (n, P, 2), not clamped."""
    mapped = points @ matrices.transpose(1, 2)  # (n, P, 3)
    return mapped[..., :2] / mapped[..., 2:]


def _warp(image: Tensor, matrix: Tensor, padding_mode: str) -> Tensor:
    """Warp one cutout (1, 3, S, S) with an output -> input map, bilinear ("border" or "zeros")."""
    size = image.shape[-1]
    points = _base_grid(size, image.device).unsqueeze(0)
    grid = _apply_map(points, matrix.unsqueeze(0)).view(1, size, size, 2)
    return F.grid_sample(
        image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True
    )


def _clamp_unit(image: Tensor) -> Tensor:
    """Clamp to [0, 1] with an identity gradient on the closed range (kornia's input clamp)."""
    return torch.where((image >= 0) & (image <= 1), image, image.clamp(0, 1))


def _saturate(image: Tensor, factor: Tensor) -> Tensor:
    """kornia's ColorJitter saturation: blend with the luma grey by `factor`, clamp to [0, 1]."""
    return kornia.enhance.adjust_saturation_with_gray_subtraction(image, factor)


def _jitter(image: Tensor, hue: Tensor, saturation: Tensor, hue_first: bool) -> Tensor:
    """kornia's ColorJitter (hue and saturation only) on one cutout (1, 3, S, S)."""
    image = _clamp_unit(image)
    if hue_first:
        image = _saturate(kornia.enhance.adjust_hue(image, hue), saturation)
    else:
        image = kornia.enhance.adjust_hue(_saturate(image, saturation), hue)
    return _clamp_unit(image)


def _color_matrices(params: CutoutParams) -> Tensor:
    """Per-cutout RGB 3x3 matrices (n, 3, 3) of the colour jitter: hue rotation about the grey
    axis and kornia's luma saturation blend, in each cutout's order."""
    hues, saturations = params.hues, params.saturations
    device = hues.device
    cos, sin = hues.cos(), hues.sin()
    n = hues.shape[0]
    eye = torch.eye(3, device=device).expand(n, 3, 3)
    ones = torch.full((3, 3), 1 / 3, device=device)
    # Rodrigues rotation about (1, 1, 1)/sqrt(3): cos I + (1 - cos) uu^T + sin [u]x.
    # The cross-product matrix [u]x of u = (1, 1, 1)/sqrt(3), built on the device (no copy).
    shift = torch.eye(3, device=device).roll(1, dims=1)
    cross = (shift.T - shift) / math.sqrt(3)
    cos, sin = cos[:, None, None], sin[:, None, None]
    rotation = cos * eye + (1 - cos) * ones + sin * cross
    # Every output channel takes (1 - s) of the luma grey: each row of `grey` is the weights
    # (filled on the device, not copied from the host).
    grey = torch.empty(3, 3, device=device)
    grey[:, 0], grey[:, 1], grey[:, 2] = LUMA
    saturate = saturations[:, None, None] * eye + (1 - saturations)[:, None, None] * grey
    hue_first = params.hue_first[:, None, None]
    return torch.where(hue_first, saturate @ rotation, rotation @ saturate)


def _unit_bounds(chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Per-cutout clamp bounds (n, 1, 1, 1): [0, 1] where `chosen`, unbounded elsewhere."""
    low = torch.where(chosen, 0.0, -math.inf)[:, None, None, None]
    return low, torch.where(chosen, 1.0, math.inf)[:, None, None, None]


class ReferenceCutouts:
    """The seed's cutouts done plainly, one cutout at a time, in fp32: the definition to match."""

    def __init__(self, cut_size: int, cutn: int, cut_pow: float = 1.0, augment: bool = True):
        self.cut_size, self.cutn, self.cut_pow, self.augment = cut_size, cutn, cut_pow, augment

    def sample(self, image_size: tuple[int, int], generator: torch.Generator) -> CutoutParams:
        """Draw the random parameters of one batch of cutouts."""
        return sample_cutout_params(
            image_size, self.cutn, self.cut_size, self.cut_pow, self.augment, generator
        )

    def __call__(self, image: Tensor, generator: torch.Generator) -> Tensor:
        """(1, 3, H, W) in [0, 1] -> (cutn, 3, S, S)."""
        height, width = image.shape[-2:]
        return self.apply(image, self.sample((height, width), generator))

    def apply(self, image: Tensor, params: CutoutParams) -> Tensor:
        """Cut, resize and augment with the given parameters, in the seed's order."""
        image = image.float()
        identity = torch.eye(3, device=image.device)
        cutouts = []
        for index in range(params.sizes.shape[0]):
            size = int(params.sizes[index])
            x, y = (int(value) for value in params.offsets[index])
            cutout = resample(image[:, :, y : y + size, x : x + size], self.cut_size)
            if bool(params.flips[index]):
                cutout = cutout.flip(3)
            if bool(params.sharpen[index]):
                cutout = kornia.enhance.sharpness(_clamp_unit(cutout), params.sharpness[index])
            if not torch.equal(params.affines[index], identity):
                cutout = _warp(cutout, params.affines[index], "border")
            if not torch.equal(params.perspectives[index], identity):
                cutout = _warp(cutout, params.perspectives[index], "zeros")
            if bool(params.jitter[index]):
                hue_first = bool(params.hue_first[index])
                hue, saturation = params.hues[index], params.saturations[index]
                cutout = _jitter(cutout, hue, saturation, hue_first)
            cutouts.append(cutout + params.noise[index])
        return torch.cat(cutouts, dim=0)


class FastCutouts(ReferenceCutouts):
    """All cutouts at once, in the reference's order: one grid_sample crops, resizes and flips
    every cutout, a second one applies each cutout's affine and perspective together.

    Downscaling is anti-aliased with a stack of Lanczos-filtered copies of the image at half-octave
    steps; each cutout blends the two levels around its own scale factor. Sharpness is a 3x3 box
    filter, the perspective's black surround a per-pixel coverage factor and the colour jitter one
    3x3 matrix per cutout (hue as a rotation about the grey axis), with kornia's clamps to [0, 1].
    """

    def __init__(
        self,
        cut_size: int,
        cutn: int,
        cut_pow: float = 1.0,
        augment: bool = True,
        mode: str = "bilinear",
        antialias: bool = True,
    ):
        super().__init__(cut_size, cutn, cut_pow, augment)
        self.mode, self.antialias = mode, antialias
        # Per-device constants, made once: copying from host memory every step would sync.
        self._kernels: dict[tuple[int, torch.device], Tensor] = {}
        self._grids: dict[torch.device, Tensor] = {}

    def _kernel(self, level: int, device: torch.device) -> Tensor:
        """The Lanczos kernel of pyramid level `level` (scale 2 ** (level / 2)) on `device`."""
        key = (level, device)
        if key not in self._kernels:
            self._kernels[key] = lanczos_kernel(2 ** (-level / 2)).to(device)
        return self._kernels[key]

    def _lowpass(self, image: Tensor, level: int) -> Tensor:
        kernel = self._kernel(level, image.device)
        return _lowpass_axis(_lowpass_axis(image, kernel, dim=2), kernel, dim=3)

    def _base_grid(self, device: torch.device) -> Tensor:
        if device not in self._grids:
            self._grids[device] = _base_grid(self.cut_size, device)
        return self._grids[device]

    def _sharpen(self, cutouts: Tensor, params: CutoutParams) -> Tensor:
        """Blend cutouts (n, 3, S, S) toward their 3x3-smoothed copies by 1 - sharpness, edges
        kept, with kornia's clamps to [0, 1] on the cutouts it sharpens."""
        low, high = _unit_bounds(params.sharpen)
        cutouts = cutouts.clamp(low, high)
        # kornia's kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 is a 3x3 box plus 4 x centre.
        inner = cutouts[:, :, 1:-1, 1:-1]
        smoothed = (F.avg_pool2d(cutouts, 3, stride=1) * 9 + inner * 4).div(13).clamp(0, 1)
        change = F.pad(smoothed - inner, (1, 1, 1, 1))  # (n, 3, S, S); the edges stay
        return (cutouts + (1 - params.sharpness)[:, None, None, None] * change).clamp(low, high)

    def apply(self, image: Tensor, params: CutoutParams) -> Tensor:
        """Cut, resize and augment with the given parameters, batched."""
        image = image.float()
        _, _, height, width = image.shape
        n, side = params.sizes.shape[0], self.cut_size

        # 1. Crop and resize every cutout in one grid_sample: where each cutout pixel samples
        #    the image (flip, then the crop box in image coordinates).
        points = self._base_grid(image.device).expand(n, -1, -1)[..., :2]  # (n, S*S, 2)
        flip_sign = 1 - 2 * params.flips.float()
        crop_x = points[..., 0] * flip_sign[:, None]
        crop_y = points[..., 1]
        scale = (params.sizes - 1)[:, None] / 2
        pixel_x = params.offsets[:, 0:1] + (crop_x + 1) * scale
        pixel_y = params.offsets[:, 1:2] + (crop_y + 1) * scale
        grid = torch.stack(
            [pixel_x / max(width - 1, 1) * 2 - 1, pixel_y / max(height - 1, 1) * 2 - 1], dim=-1
        )  # (n, S*S, 2)

        # Anti-aliasing: filtered copies at half-octave scale factors, blended per cutout.
        max_factor = min(height, width) / side
        levels = 1
        if self.antialias and max_factor > 1:
            levels += math.ceil(2 * math.log2(max_factor))
        stack = [image] + [self._lowpass(image, level) for level in range(1, levels)]
        sources = torch.cat(stack, dim=1)  # (1, 3L, H, W)
        grid = grid.reshape(1, n * side, side, 2)
        sampled = F.grid_sample(
            sources, grid, mode=self.mode, padding_mode="border", align_corners=True
        )  # (1, 3L, n*S, S)
        sampled = sampled.view(levels, 3, n, side, side)
        if levels == 1:
            cutouts = sampled[0].transpose(0, 1)
        else:
            factor = (params.sizes / side).clamp(min=1)
            position = (2 * factor.log2()).clamp(max=levels - 1)  # (n,)
            level_ids = torch.arange(levels, device=image.device, dtype=position.dtype)
            weights = (1 - (position[None, :] - level_ids[:, None]).abs()).clamp(min=0)  # (L, n)
            cutouts = torch.einsum("ln,lcnhw->nchw", weights, sampled)
        if not self.augment:
            return cutouts + params.noise
        cutouts = self._sharpen(cutouts, params)

        # 2. Affine and perspective in one bilinear grid_sample of the cutouts: perspective
        #    (outside it: black, as a coverage factor, exact for bilinear zero padding), then
        #    affine (outside it: the edge).
        points = self._base_grid(image.device).expand(n, -1, -1)  # (n, S*S, 3)
        points = _apply_map(points, params.perspectives)
        outside = (points.abs() - 1).clamp(min=0) * ((side - 1) / 2)  # in cutout pixels
        coverage = (1 - outside).clamp(min=0).prod(dim=-1)  # (n, S*S)
        homogeneous = torch.cat([points.clamp(-1, 1), torch.ones_like(points[..., :1])], dim=-1)
        grid = _apply_map(homogeneous, params.affines).view(n, side, side, 2)
        cutouts = F.grid_sample(
            cutouts, grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        cutouts = cutouts * coverage.view(n, 1, side, side)

        # 3. Colour jitter as one 3x3 matrix per cutout, clamped before and after as kornia
        #    clamps, plus noise.
        low, high = _unit_bounds(params.jitter)
        colors = _color_matrices(params)
        cutouts = torch.einsum("nij,njhw->nihw", colors, cutouts.clamp(low, high))
        return cutouts.clamp(low, high) + params.noise
