"""Replace a gradient and clamp with gradient (the quantizer: tests/models/test_vqgan.py)."""

import torch

from artgen.engine.ops import clamp_with_grad, replace_grad


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
