"""warp: identity, and the direction of zoom, rotation and translation on a synthetic image."""

import pytest
import torch

from artgen.engine.motion import warp


def dot_image() -> torch.Tensor:
    """A 32x48 black image with a white 4x4 dot 12 px right of the centre."""
    image = torch.zeros(1, 3, 32, 48)
    image[:, :, 14:18, 34:38] = 1
    return image


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    """Brightness-weighted (x, y) relative to the image centre (y down)."""
    mass = image[0, 0]
    ys, xs = torch.meshgrid(
        torch.arange(mass.shape[0]).float(), torch.arange(mass.shape[1]).float(), indexing="ij"
    )
    total = mass.sum()
    x = (mass * xs).sum() / total - (mass.shape[1] - 1) / 2
    y = (mass * ys).sum() / total - (mass.shape[0] - 1) / 2
    return float(x), float(y)


def test_identity_returns_the_same_pixels():
    image = torch.rand(2, 3, 16, 24)
    assert torch.equal(warp(image), image)
    nearly = warp(image, zoom=1.0 + 1e-7, angle=1e-7)
    assert torch.allclose(nearly, image, atol=1e-4)
    assert nearly.shape == image.shape


def test_zoom_in_moves_content_away_from_the_centre():
    x, y = centre_of_mass(warp(dot_image(), zoom=1.5))
    assert x == pytest.approx(18, abs=0.5)
    assert y == pytest.approx(0, abs=0.5)


def test_zoom_out_moves_content_toward_the_centre_and_reflects_the_border():
    zoomed_out = warp(dot_image(), zoom=0.5)[0, 0]
    assert zoomed_out[15:17, 29:31].min() > 0.9  # 12 px right of the centre -> 6 px
    assert zoomed_out[14:18, 34:38].max() < 0.1
    # What comes from outside the frame is mirrored in: a flat grey stays flat (no black border).
    grey = torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(warp(grey, zoom=0.5, angle=30), grey, atol=1e-5)


def test_positive_angle_turns_counter_clockwise():
    x, y = centre_of_mass(warp(dot_image(), angle=90))
    assert x == pytest.approx(0, abs=0.5)
    assert y == pytest.approx(-12, abs=0.5)  # right of centre -> above it (y is down)


def test_translation_is_in_pixels_right_and_down():
    x, y = centre_of_mass(warp(dot_image(), translate_x=4, translate_y=-3))
    assert x == pytest.approx(16, abs=0.1)
    assert y == pytest.approx(-3, abs=0.1)


def test_output_stays_in_range_and_bad_zoom_is_refused():
    image = torch.rand(1, 3, 16, 16)
    warped = warp(image, zoom=1.3, angle=33, translate_x=2.5)
    assert warped.min() >= 0 and warped.max() <= 1
    with pytest.raises(ValueError, match="zoom"):
        warp(image, zoom=0)
