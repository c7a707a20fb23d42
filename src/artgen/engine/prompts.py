"""Prompt syntax ("text:weight:stop | ...") and the prompt losses of CLIP-guided VQGAN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artgen.engine.ops import replace_grad

# The grammar lives in prompt_syntax (torch-free, so artgen.client imports no torch); re-exported.
from artgen.engine.prompt_syntax import (
    NUMBER,
    NoisePromptSpec,
    PromptSpec,
    parse_noise_prompts,
    parse_prompt,
    parse_prompts,
)

__all__ = [
    "NUMBER",
    "NoisePromptSpec",
    "Prompt",
    "PromptSpec",
    "noise_embedding",
    "parse_noise_prompts",
    "parse_prompt",
    "parse_prompts",
    "spherical_distance",
]


def spherical_distance(x: Tensor, y: Tensor) -> Tensor:
    """Squared great-circle distance between normalised rows: x (B, D), y (N, D) -> (B, N)."""
    x = F.normalize(x, dim=-1).unsqueeze(1)  # (B, 1, D)
    y = F.normalize(y, dim=-1).unsqueeze(0)  # (1, N, D)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


class Prompt(nn.Module):
    """Loss pulling image embeddings toward `embed` (N, D); a negative weight pushes away."""

    embed: Tensor  # (N, D) fp32 buffer

    def __init__(self, embed: Tensor, weight: float = 1.0, stop: float = -math.inf) -> None:
        super().__init__()
        self.register_buffer("embed", embed.detach().float())
        self.weight = float(weight)
        self.stop = float(stop)

    def forward(self, image_embeddings: Tensor) -> Tensor:
        """Mean weighted distance of the cutout embeddings (B, D) to this prompt; a scalar."""
        distances = spherical_distance(image_embeddings.float(), self.embed)  # (B, N)
        distances = distances * math.copysign(1.0, self.weight)
        # Below `stop` the value still counts but the gradient stops pulling.
        stopped = torch.clamp(distances, min=self.stop)
        return abs(self.weight) * replace_grad(distances, stopped).mean()


def noise_embedding(seed: int, dim: int) -> Tensor:
    """The random embedding (1, dim) of a noise prompt, from its own CPU generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(1, dim).normal_(generator=generator)
