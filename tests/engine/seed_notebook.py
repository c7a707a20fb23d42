"""The seed notebook's code (its resample, MakeCutouts and Prompt), kept as it is written there.

test_seed_parity.py compares our reference path with it: kornia draws its own parameters from the
global RNG; SeedMakeCutouts.replayed reads them back as our CutoutParams.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artgen.engine.cutout_params import CutoutParams
from artgen.engine.ops import replace_grad


def seed_sinc(x: Tensor) -> Tensor:
    return torch.where(x != 0, torch.sin(math.pi * x) / (math.pi * x), x.new_ones([]))


def seed_lanczos(x: Tensor, a: int) -> Tensor:
    cond = torch.logical_and(-a < x, x < a)
    out = torch.where(cond, seed_sinc(x) * seed_sinc(x / a), x.new_zeros([]))
    return out / out.sum()


def seed_ramp(ratio: float, width: int) -> Tensor:
    n = math.ceil(width / ratio + 1)
    out = torch.empty([n])
    cur = 0.0
    for i in range(n):
        out[i] = cur
        cur += ratio
    return torch.cat([-out[1:].flip([0]), out])[1:-1]


def seed_resample(input: Tensor, size: tuple[int, int], align_corners: bool = True) -> Tensor:
    n, c, h, w = input.shape
    dh, dw = size
    input = input.reshape([n * c, 1, h, w])
    if dh < h:
        kernel_h = seed_lanczos(seed_ramp(dh / h, 2), 2).to(input.device, input.dtype)
        pad_h = (kernel_h.shape[0] - 1) // 2
        input = F.pad(input, (0, 0, pad_h, pad_h), "reflect")
        input = F.conv2d(input, kernel_h[None, None, :, None])
    if dw < w:
        kernel_w = seed_lanczos(seed_ramp(dw / w, 2), 2).to(input.device, input.dtype)
        pad_w = (kernel_w.shape[0] - 1) // 2
        input = F.pad(input, (pad_w, pad_w, 0, 0), "reflect")
        input = F.conv2d(input, kernel_w[None, None, None, :])
    input = input.reshape([n, c, h, w])
    return F.interpolate(input, size, mode="bicubic", align_corners=align_corners)


class SeedMakeCutouts(nn.Module):
    """The seed's MakeCutouts; the crop sizes and offsets are handed in (drawn by our sampler)."""

    def __init__(self, cut_size: int, cutn: int, p: float | None = None):
        super().__init__()
        self.cut_size, self.cutn = cut_size, cutn
        # p=None: the seed's probabilities; p=1.0: every augmentation on every cutout.
        self.augs = nn.Sequential(
            K.RandomHorizontalFlip(p=p or 0.5),
            K.RandomSharpness(0.3, p=p or 0.4),
            K.RandomAffine(degrees=30, translate=0.1, p=p or 0.8, padding_mode="border"),
            K.RandomPerspective(0.2, p=p or 0.4),
            K.ColorJitter(hue=0.01, saturation=0.01, p=p or 0.7),
        )
        self.noise_fac = 0.1

    def forward(self, input: Tensor, sizes: Tensor, offsets: Tensor) -> Tensor:
        cutouts = []
        for size, (offsetx, offsety) in zip(
            sizes.int().tolist(), offsets.int().tolist(), strict=True
        ):
            cutout = input[:, :, offsety : offsety + size, offsetx : offsetx + size]
            cutouts.append(seed_resample(cutout, (self.cut_size, self.cut_size)))
        batch = self.augs(torch.cat(cutouts, dim=0))
        facs = batch.new_empty([self.cutn, 1, 1, 1]).uniform_(0, self.noise_fac)
        self.noise = (facs * torch.randn_like(batch)).detach()
        return batch + self.noise

    def replayed(self, sizes: Tensor, offsets: Tensor) -> CutoutParams:
        """The draws of the last forward() as our CutoutParams."""
        flip, sharpness, affine, perspective, jitter = self.augs
        n = self.cutn

        def chosen(module: nn.Module) -> Tensor:
            return module._params["batch_prob"].bool()

        def our_map(module: nn.Module) -> Tensor:
            # kornia: source -> destination in pixels; ours: output -> input in [-1, 1].
            pixel_map = module.compute_transformation(
                torch.empty(n, 3, self.cut_size, self.cut_size), module._params, module.flags
            )
            to_unit = torch.eye(3)
            to_unit[0, 0] = to_unit[1, 1] = 2 / (self.cut_size - 1)
            to_unit[:2, 2] = -1.0
            mapped = to_unit @ torch.linalg.inv(pixel_map) @ torch.linalg.inv(to_unit)
            return torch.where(chosen(module)[:, None, None], mapped, torch.eye(3))

        order = jitter._params["order"].tolist()
        jittered = chosen(jitter)
        return CutoutParams(
            sizes=sizes,
            offsets=offsets,
            flips=chosen(flip),
            sharpen=chosen(sharpness),
            sharpness=torch.where(chosen(sharpness), sharpness._params["sharpness"], 1.0),
            affines=our_map(affine),
            perspectives=our_map(perspective),
            jitter=jittered,
            hue_first=torch.full((n,), order.index(3) < order.index(2)),
            hues=torch.where(jittered, jitter._params["hue_factor"] * 2 * math.pi, 0.0),
            saturations=torch.where(jittered, jitter._params["saturation_factor"], 1.0),
            noise=self.noise,
        )


class SeedPrompt(nn.Module):
    """The seed's Prompt (spherical distance, weight sign, stop)."""

    def __init__(self, embed: Tensor, weight: float = 1.0, stop: float = float("-inf")):
        super().__init__()
        self.register_buffer("embed", embed)
        self.register_buffer("weight", torch.as_tensor(weight))
        self.register_buffer("stop", torch.as_tensor(stop))

    def forward(self, input: Tensor) -> Tensor:
        input_normed = F.normalize(input.unsqueeze(1), dim=2)
        embed_normed = F.normalize(self.embed.unsqueeze(0), dim=2)
        dists = input_normed.sub(embed_normed).norm(dim=2).div(2).arcsin().pow(2).mul(2)
        dists = dists * self.weight.sign()
        return self.weight.abs() * replace_grad(dists, torch.maximum(dists, self.stop)).mean()
