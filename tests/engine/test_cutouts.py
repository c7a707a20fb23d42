"""Cutouts: the fast batched path computes what the plain reference computes."""

import math

import pytest
import torch
import torch.nn.functional as F

from artgen.engine.cutouts import FastCutouts, ReferenceCutouts, lanczos_kernel, resample


def smooth_image(height: int, width: int) -> torch.Tensor:
    """A smooth synthetic colour image (1, 3, H, W) in [0, 1]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    channels = [
        0.5 + 0.4 * torch.sin(6 * x + 2 * y),
        0.5 + 0.4 * torch.cos(5 * y - 3 * x),
        0.5 + 0.3 * torch.sin(9 * x * y),
    ]
    return torch.stack(channels).unsqueeze(0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a, b)))


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize(("size", "cut_size"), [((96, 80), 32), ((40, 56), 64), ((200, 160), 48)])
def test_fast_matches_reference(augment, size, cut_size):
    image = smooth_image(*size)
    reference = ReferenceCutouts(cut_size, 12, cut_pow=1.0, augment=augment)
    fast = FastCutouts(cut_size, 12, cut_pow=1.0, augment=augment)
    params = reference.sample(size, torch.Generator().manual_seed(3))
    expected = reference.apply(image, params)
    got = fast.apply(image, params)
    assert got.shape == expected.shape == (12, 3, cut_size, cut_size)
    assert psnr(got, expected) >= 30


def test_fast_matches_reference_on_texture_when_downscaling():
    # Fine texture, 3-4x downscales: aliasing would show here without the pre-filter.
    generator = torch.Generator().manual_seed(0)
    image = F.avg_pool2d(torch.rand(1, 3, 160, 160, generator=generator), 3, 1, 1)
    reference = ReferenceCutouts(40, 8, cut_pow=0.3, augment=False)
    params = reference.sample((160, 160), torch.Generator().manual_seed(1))
    expected = reference.apply(image, params)
    got = FastCutouts(40, 8, augment=False).apply(image, params)
    assert psnr(got, expected) >= 30
    # Without the pre-filter the same sampling aliases and lands clearly further away.
    aliased = FastCutouts(40, 8, augment=False, antialias=False).apply(image, params)
    assert psnr(aliased, expected) < psnr(got, expected) - 5


def test_same_generator_state_same_cutouts_global_rng_unused():
    image = smooth_image(64, 64)
    for cutouts in (ReferenceCutouts(32, 6), FastCutouts(32, 6)):
        torch.manual_seed(0)
        first = cutouts(image, torch.Generator().manual_seed(9))
        torch.manual_seed(1)
        second = cutouts(image, torch.Generator().manual_seed(9))
        assert torch.equal(first, second)
        assert not torch.equal(first, cutouts(image, torch.Generator().manual_seed(10)))


def test_augmentations_change_the_cutouts():
    image = smooth_image(64, 64)
    plain = FastCutouts(32, 8, augment=False)(image, torch.Generator().manual_seed(0))
    augmented = FastCutouts(32, 8, augment=True)(image, torch.Generator().manual_seed(0))
    assert psnr(plain, augmented) < 30


def test_gradients_reach_the_image():
    image = smooth_image(48, 48).requires_grad_(True)
    FastCutouts(32, 4)(image, torch.Generator().manual_seed(0)).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_cut_pow_controls_sizes():
    reference = ReferenceCutouts(16, 256, cut_pow=4.0, augment=False)
    small = reference.sample((128, 128), torch.Generator().manual_seed(0)).sizes
    reference.cut_pow = 0.25
    large = reference.sample((128, 128), torch.Generator().manual_seed(0)).sizes
    assert small.mean() < large.mean()
    assert small.min() >= 16 and large.max() <= 128


def test_resample_keeps_constant_and_lanczos_sums_to_one():
    assert float(lanczos_kernel(0.3).sum()) == pytest.approx(1.0, abs=1e-6)
    constant = torch.full((1, 3, 50, 70), 0.25)
    assert torch.allclose(resample(constant, 16), torch.full((1, 3, 16, 16), 0.25), atol=1e-6)


def test_perspective_maps_send_moved_corners_back_to_the_corners():
    from artgen.engine.cutout_params import _corners, _perspective_maps

    corners = _corners(torch.device("cpu"))
    moves = torch.rand(6, 4, 2, generator=torch.Generator().manual_seed(0)) * 0.2
    moved = corners - corners * moves
    maps = _perspective_maps(moved)
    mapped = torch.cat([moved, torch.ones(6, 4, 1)], dim=-1) @ maps.transpose(1, 2)
    assert torch.allclose(mapped[..., :2] / mapped[..., 2:], corners.expand(6, 4, 2), atol=1e-5)
    # No move: exactly the identity (the reference skips such warps).
    assert torch.equal(_perspective_maps(corners.expand(1, 4, 2))[0], torch.eye(3))


def test_augmentations_are_drawn_from_the_seeds_distributions():
    # kornia's: probabilities 0.5 / 0.4 / 0.8 / 0.4 / 0.7, sharpness factor in [0, 0.3], rotation
    # up to 30 degrees about the centre, translation up to 0.1 of the side and perspective corners
    # moved inward by up to 0.2 of the half side (pixels of the S-pixel cutout), hue +-0.01 turn,
    # saturation 1 +- 0.01, noise scale up to 0.1.
    from artgen.engine.cutout_params import _corners

    n, side = 4000, 32
    params = ReferenceCutouts(side, n).sample((64, 64), torch.Generator().manual_seed(0))
    eye = torch.eye(3)

    def rate(mask):
        return float(mask.float().mean())

    affine_on = params.affines.ne(eye).flatten(1).any(1)
    perspective_on = params.perspectives.ne(eye).flatten(1).any(1)
    assert rate(params.flips) == pytest.approx(0.5, abs=0.03)
    assert rate(params.sharpen) == pytest.approx(0.4, abs=0.03)
    assert rate(affine_on) == pytest.approx(0.8, abs=0.03)
    assert rate(perspective_on) == pytest.approx(0.4, abs=0.03)
    assert rate(params.jitter) == pytest.approx(0.7, abs=0.03)
    assert params.hue_first.unique().numel() == 1  # one order per batch, as kornia draws it

    factors = params.sharpness[params.sharpen]
    assert float(factors.min()) >= 0 and 0.29 < float(factors.max()) <= 0.3
    assert torch.equal(params.sharpness[~params.sharpen], torch.ones(int((~params.sharpen).sum())))

    to_pixels = (side - 1) / 2
    rotations = params.affines[:, :2, :2]
    angles = torch.atan2(rotations[:, 1, 0], rotations[:, 0, 0]).rad2deg().abs()
    assert 29 < float(angles.max()) <= 30
    shifts = -(rotations.transpose(1, 2) @ params.affines[:, :2, 2:]).squeeze(-1) * to_pixels
    assert 0.095 * side < float(shifts.abs().max()) <= 0.1 * side + 1e-4

    forward = torch.linalg.inv(params.perspectives[perspective_on])
    corners = torch.cat([_corners(torch.device("cpu")), torch.ones(4, 1)], dim=1)  # (4, 3)
    moved = corners @ forward.transpose(1, 2)
    moved = moved[..., :2] / moved[..., 2:]
    inward = (moved - corners[:, :2]) * -corners[:, :2] * to_pixels  # pixels, >= 0 inward
    assert float(inward.min()) > -1e-3 and 0.095 * side < float(inward.max()) <= 0.1 * side + 1e-3

    jittered = params.jitter
    assert float(params.hues[jittered].abs().max()) <= 0.01 * 2 * math.pi + 1e-6
    assert float((params.saturations[jittered] - 1).abs().max()) <= 0.01 + 1e-6
    assert torch.equal(params.hues[~jittered], torch.zeros(int((~jittered).sum())))
    levels = params.noise.flatten(1).std(dim=1)
    assert float(levels.max()) < 0.105 and float(levels.min()) < 0.005
