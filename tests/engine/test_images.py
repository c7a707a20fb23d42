"""Tensor <-> PIL conversions."""

import pytest
import torch
from PIL import Image

from artgen.engine.images import from_pil, resize, to_pil


def test_round_trip_is_exact_on_8_bit_values():
    pixels = torch.randint(0, 256, (1, 3, 5, 7), generator=torch.Generator().manual_seed(0))
    image = to_pil(pixels.float() / 255)
    assert image.size == (7, 5) and image.mode == "RGB"
    assert torch.equal(from_pil(image), pixels.float() / 255)


def test_from_pil_resizes_and_converts():
    image = Image.new("L", (40, 20), 128)
    tensor = from_pil(image, (16, 8))
    assert tensor.shape == (1, 3, 8, 16)
    assert torch.allclose(tensor, torch.full_like(tensor, 128 / 255))
    assert resize(image, (10, 10)).size == (10, 10)


def test_to_pil_clamps_and_checks_shape():
    assert to_pil(torch.full((3, 2, 2), 2.0)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match="batch"):
        to_pil(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_pil(torch.zeros(1, 4, 4))
