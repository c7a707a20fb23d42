"""The VQGAN's codebooks: nearest-code snapping (the project's one straight-through quantizer,
the engine's too) and taming's two quantizer modules, under taming's state-dict names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codebook vector for every position of z (B, D, h, w) -> (B, h, w)."""
    b, d, h, w = z.shape
    # In float32 even under autocast: bf16 distances would pick wrong codes.
    with torch.autocast(z.device.type, enabled=False):
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()  # (BHW, D)
        book = codebook.float()  # (N, D)
        # |z - e|^2 = |z|^2 + |e|^2 - 2 z.e; |z|^2 is the same for every code, so it is left out.
        distances = book.pow(2).sum(1)[None, :] - 2 * flat @ book.T  # (BHW, N)
    return distances.argmin(1).reshape(b, h, w)


def snap_to_codebook(z: Tensor, codebook: Tensor) -> Tensor:
    """Nearest codebook vectors for z (B, D, h, w), exactly, with a straight-through gradient to z
    (as if snapping were the identity): the one quantizer of the project, the engine's too."""
    indices = nearest_codes(z, codebook)  # (B, h, w)
    z_q = F.embedding(indices, codebook).permute(0, 3, 1, 2).to(z.dtype)  # (B, D, h, w)
    # z - z.detach() is exactly 0 and carries z's gradient: the sum is z_q to the last bit.
    return z_q.detach() + (z - z.detach())


class Codebook(nn.Module):
    """A (n_embed, embed_dim) table under the name `weight`, like nn.Embedding's."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        # taming's initialisation; uniform_ also keeps meta-device construction cheap.
        bound = 1.0 / n_embed
        self.weight = nn.Parameter(torch.empty(n_embed, embed_dim).uniform_(-bound, bound))


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook (taming `VectorQuantizer2`; key `quantize.embedding.weight`)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = Codebook(n_embed, embed_dim)

    @property
    def codebook(self) -> Tensor:
        """(n_embed, embed_dim) codebook vectors."""
        return self.embedding.weight

    def forward(self, z: Tensor) -> Tensor:
        """Snap a codebook-space latent (B, embed_dim, h, w) to its nearest codes."""
        return snap_to_codebook(z, self.codebook)


class GumbelQuantizer(nn.Module):
    """Gumbel-softmax codebook (taming `GumbelQuantize`: `quantize.proj.*`, `quantize.embed.*`).

    At inference the code is the arg-max of the logits: deterministic, no Gumbel noise.
    """

    def __init__(self, in_channels: int, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, n_embed, 1)
        self.embed = Codebook(n_embed, embed_dim)

    @property
    def codebook(self) -> Tensor:
        """(n_embed, embed_dim) codebook vectors."""
        return self.embed.weight

    def forward(self, h: Tensor) -> Tensor:
        """Pre-quantisation features (B, C, h, w) -> chosen code vectors (B, embed_dim, h, w)."""
        indices = self.proj(h).argmax(1)  # (B, h, w)
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2)  # (B, D, h, w)
