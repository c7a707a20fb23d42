"""Differentiable helpers of CLIP-guided VQGAN: replace a gradient, clamp with gradient.

The straight-through quantizer is the models layer's `artgen.models.quantizers.snap_to_codebook`.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _ReplaceGrad(torch.autograd.Function):
    """Forward the first tensor, send the gradient to the second (the straight-through trick)."""

    @staticmethod
    def forward(ctx, x_forward: Tensor, x_backward: Tensor) -> Tensor:  # type: ignore[override]
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        return None, grad_out.sum_to_size(ctx.shape)


def replace_grad(x_forward: Tensor, x_backward: Tensor) -> Tensor:
    """Value of `x_forward`, gradient of `x_backward` (shapes broadcastable)."""
    return _ReplaceGrad.apply(x_forward, x_backward)


class _ClampWithGrad(torch.autograd.Function):
    """Clamp whose gradient still flows when it points back into the allowed range."""

    @staticmethod
    def forward(ctx, x: Tensor, low: float, high: float) -> Tensor:  # type: ignore[override]
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # Keep the gradient only where a descent step moves x toward the range (or it is inside).
        keep = grad_out * (x - x.clamp(ctx.low, ctx.high)) >= 0
        return grad_out * keep, None, None


def clamp_with_grad(x: Tensor, low: float, high: float) -> Tensor:
    """Clamp `x` to [low, high]; outside values still get gradients that pull them back in."""
    return _ClampWithGrad.apply(x, low, high)
