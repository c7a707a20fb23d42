"""quantizers.snap_to_codebook: the one straight-through quantizer (exact codes, float32)."""

from __future__ import annotations

import torch

from artgen.models.quantizers import snap_to_codebook


def grid(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) vectors as a latent grid (1, D, N, 1)."""
    return vectors.T.reshape(1, vectors.shape[1], vectors.shape[0], 1)


def test_snap_to_codebook_picks_nearest_code_exactly() -> None:
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    z = torch.tensor([[0.9, 1.2], [-1.5, 0.0], [0.1, -0.1]])
    # Exactly the codebook rows (not z plus a rounded difference).
    assert torch.equal(snap_to_codebook(grid(z), codebook), grid(codebook[[1, 2, 0]]))


def test_snap_to_codebook_straight_through_gradient() -> None:
    codebook = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    z = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(1, 4, 3, 5)
    (snap_to_codebook(z, codebook) * weights).sum().backward()
    # The gradient reaches z unchanged, as if quantization were the identity.
    assert torch.equal(z.grad, weights)


def test_snap_to_codebook_distances_in_float32_under_autocast() -> None:
    # Two codes that bf16 cannot tell apart: 1.0 and 1.0 + 2**-10 (bf16 keeps 7 mantissa bits).
    codebook = torch.tensor([[1.0, 0.0], [1.0 + 2**-10, 0.0]])
    z = torch.tensor([[1.0 + 2**-10, 0.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        snapped = snap_to_codebook(grid(z), codebook)
    assert torch.equal(snapped, grid(codebook[[1]]))
