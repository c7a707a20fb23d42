"""Straight-through quantize and clamp with gradient."""

import torch

from artgen.engine.ops import clamp_with_grad, quantize_latent, replace_grad, vector_quantize


def test_vector_quantize_picks_nearest_code():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    z = torch.tensor([[0.9, 1.2], [-1.5, 0.0], [0.1, -0.1]])
    assert torch.equal(vector_quantize(z, codebook), codebook[[1, 2, 0]])


def test_straight_through_gradient():
    codebook = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    z = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(1, 4, 3, 5)
    (quantize_latent(z, codebook) * weights).sum().backward()
    # The gradient reaches z unchanged, as if quantization were the identity.
    assert torch.equal(z.grad, weights)


def test_replace_grad_sums_to_shape():
    x_backward = torch.ones(3, requires_grad=True)
    out = replace_grad(torch.zeros(2, 3), x_backward)
    assert torch.equal(out, torch.zeros(2, 3))
    out.sum().backward()
    assert torch.equal(x_backward.grad, torch.full((3,), 2.0))


def test_clamp_with_grad():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    out = clamp_with_grad(x, 0.0, 1.0)
    assert torch.equal(out, torch.tensor([0.0, 0.5, 1.0]))
    # Gradient +1: descent lowers x; kept below the top (pulls 1.5 back in), dropped at -0.5.
    out.backward(torch.ones(3))
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0]))
    x.grad = None
    clamp_with_grad(x, 0.0, 1.0).backward(-torch.ones(3))
    assert torch.equal(x.grad, torch.tensor([-1.0, -1.0, 0.0]))
