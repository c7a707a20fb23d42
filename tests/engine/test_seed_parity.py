"""The reference path computes the seed notebook's objective; the fast path stays close to it.

The seed's cutouts are built (seed_notebook.py) from `kornia.augmentation` modules exactly as the
notebook builds them (Crowson's "z+quantize method with augmentations"). kornia draws its own
parameters from the global RNG; they are read back from each module and replayed into our
`CutoutParams`, so both sides see the same z, weights and random draws.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from seed_notebook import SeedMakeCutouts, SeedPrompt
from torch import Tensor

from artgen.engine import cutout_params as cutout_params_module
from artgen.engine.cutout_params import CutoutParams, sample_cutout_params
from artgen.engine.cutouts import FastCutouts, ReferenceCutouts
from artgen.engine.generate import Generation
from artgen.engine.images import fit_area
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams

CPU = torch.device("cpu")
REFERENCE = EngineOptions(fast=False)
PROMPTS = ["a red castle", "fog"]
WEIGHTS = [1.0, -0.5]
WIDTH, HEIGHT, CUTN = 160, 128, 16


# --- helpers


def generation(
    models, seed: int, fast: bool = False, size: tuple[int, int] = (WIDTH, HEIGHT), cutn: int = CUTN
) -> Generation:
    prompts = " | ".join(f"{text}:{weight}" for text, weight in zip(PROMPTS, WEIGHTS, strict=True))
    params = GenerationParams(prompts=prompts, width=size[0], height=size[1], cutn=cutn, seed=seed)
    return Generation(models, params, device=CPU, options=EngineOptions(fast=fast))


def crops(image_size: tuple[int, int], cut_size: int, seed: int, cutn: int = CUTN):
    return sample_cutout_params(
        image_size, cutn, cut_size, 1.0, False, torch.Generator().manual_seed(seed)
    )


def seed_loss_and_gradient(models, z: Tensor, seed: int, p: float | None, cutn: int = CUTN):
    """The seed's loss and dLoss/dz at z, and its draws replayed as our CutoutParams."""
    critic = models.critics[0]
    factor = models.vqgan.factor
    run = generation(models, seed, size=(z.shape[-1] * factor, z.shape[-2] * factor), cutn=cutn)
    z = z.detach().clone().requires_grad_(True)
    image = run.synthesize(z)  # the model side (quantize, decode, clamp) was audited exact
    make_cutouts = SeedMakeCutouts(critic.cut_size, cutn, p=p)
    box = crops(image.shape[-2:], critic.cut_size, seed, cutn)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1000 + seed)
        batch = make_cutouts(image, box.sizes, box.offsets)
    embeddings = critic.encode_image(batch).float()
    with torch.no_grad():
        texts = critic.encode_text(PROMPTS).float()
    prompts = [SeedPrompt(texts[i : i + 1], weight) for i, weight in enumerate(WEIGHTS)]
    loss = sum(prompt(embeddings) for prompt in prompts)
    loss.backward()
    return float(loss.detach()), z.grad.flatten(), make_cutouts.replayed(box.sizes, box.offsets)


def our_loss_and_gradient(models, z: Tensor, seed: int, params: CutoutParams, fast: bool):
    size = (z.shape[-1] * models.vqgan.factor, z.shape[-2] * models.vqgan.factor)
    run = generation(models, seed, fast=fast, size=size, cutn=params.sizes.shape[0])
    with torch.no_grad():
        run.z.copy_(z)
    cutouts = run._cutouts[0]
    image = run.synthesize(run.z)
    loss = run.loss_from([run.embed_cutouts(0, cutouts.apply(image, params))])
    loss.backward()
    return float(loss.detach()), run.z.grad.flatten()


def cosine(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


# --- tests


@pytest.mark.parametrize("p", [None, 1.0], ids=["seed-probabilities", "every-augmentation"])
def test_reference_cutouts_equal_the_seeds_pixel_for_pixel(p):
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 120), indexing="ij")
    image = torch.stack([x, y, 0.5 + 0.5 * torch.sin(9 * x * y)]).unsqueeze(0)
    make_cutouts = SeedMakeCutouts(48, CUTN, p=p)
    box = crops((96, 120), 48, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        expected = make_cutouts(image, box.sizes, box.offsets)
    params = make_cutouts.replayed(box.sizes, box.offsets)
    got = ReferenceCutouts(48, CUTN).apply(image, params)
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("p", [None, 1.0], ids=["seed-probabilities", "every-augmentation"])
def test_reference_objective_is_the_seeds(tiny_models, p):
    # Measured: loss relative difference ~1e-7, z-gradient cosine 1.000000.
    for seed in range(3):
        z = generation(tiny_models, seed).z.detach()
        seed_loss, seed_gradient, params = seed_loss_and_gradient(tiny_models, z, seed, p)
        loss, gradient = our_loss_and_gradient(tiny_models, z, seed, params, fast=False)
        assert loss == pytest.approx(seed_loss, rel=1e-3)
        assert cosine(gradient, seed_gradient) >= 0.995


def every_augmentation(monkeypatch) -> None:
    """Our sampler with every augmentation on every cutout."""
    for name in ("FLIP_P", "SHARPNESS_P", "AFFINE_P", "PERSPECTIVE_P", "JITTER_P"):
        monkeypatch.setattr(cutout_params_module, name, 1.0)


@pytest.mark.parametrize("forced", [False, True], ids=["seed-probabilities", "every-augmentation"])
def test_fast_path_z_gradient_matches_the_reference_with_augmentations(
    tiny_models, monkeypatch, forced
):
    if forced:
        every_augmentation(monkeypatch)
    cosines = []
    for seed in range(3):
        z = generation(tiny_models, seed).z.detach()
        cut_size = tiny_models.critics[0].cut_size
        params = ReferenceCutouts(cut_size, CUTN).sample(
            (HEIGHT, WIDTH), torch.Generator().manual_seed(seed)
        )
        assert bool(params.perspectives.ne(torch.eye(3)).any())
        _, reference = our_loss_and_gradient(tiny_models, z, seed, params, fast=False)
        _, fast = our_loss_and_gradient(tiny_models, z, seed, params, fast=True)
        cosines.append(cosine(fast, reference))
    assert min(cosines) >= 0.98


def test_fast_cutouts_stay_close_to_the_reference_with_every_augmentation(monkeypatch):
    every_augmentation(monkeypatch)
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 120), indexing="ij")
    image = torch.stack([x, y, 0.5 + 0.5 * torch.sin(9 * x * y)]).unsqueeze(0)
    params = ReferenceCutouts(48, CUTN).sample((96, 120), torch.Generator().manual_seed(2))
    expected = ReferenceCutouts(48, CUTN).apply(image, params)
    got = FastCutouts(48, CUTN).apply(image, params)
    psnr = float(10 * torch.log10(1 / F.mse_loss(got, expected)))
    assert psnr >= 30


def measure(models, size: tuple[int, int], cutn: int, seeds: int) -> None:
    """Print loss and z-gradient agreement: reference vs seed, fast vs reference."""
    for seed in range(seeds):
        z = generation(models, seed, size=size, cutn=cutn).z.detach()
        seed_loss, seed_gradient, params = seed_loss_and_gradient(models, z, seed, None, cutn)
        loss, reference = our_loss_and_gradient(models, z, seed, params, fast=False)
        _, fast = our_loss_and_gradient(models, z, seed, params, fast=True)
        print(
            f"seed {seed}: loss reference/seed {loss / seed_loss:.7f}, z-gradient cosine "
            f"reference-seed {cosine(reference, seed_gradient):.6f}, fast-reference "
            f"{cosine(fast, reference):.4f}, fast-seed {cosine(fast, seed_gradient):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    # python3 tests/engine/test_seed_parity.py [tiny|random-f16]: the figures behind the tests;
    # random-f16 is ViT-B/32 and f16-16384 shapes with random weights at 320x256, cutn 16.
    import sys
    import tempfile

    from artgen.models.catalog import Catalog
    from artgen.models.loading import load_models

    torch.set_num_threads(1)
    which = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    names = ("tiny", "tiny") if which == "tiny" else ("random_f16_16384", "random_vit_b_32")
    bundle = load_models(names[0], [names[1]], CPU, Catalog(tempfile.mkdtemp()))
    measure(bundle, (WIDTH, HEIGHT) if which == "tiny" else (320, 256), CUTN, 3)


# --- image prompts: the seed's resize_image and 'path:weight:stop'


def seed_resize_image(image: Image.Image, out_size: tuple[int, int]) -> Image.Image:
    """The seed notebook's resize_image."""
    ratio = image.size[0] / image.size[1]
    area = min(image.size[0] * image.size[1], out_size[0] * out_size[1])
    size = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
    return image.resize(size, Image.LANCZOS)


@pytest.mark.parametrize(
    ("size", "out", "expected"),
    [
        ((400, 100), (64, 64), (128, 32)),
        ((20, 10), (64, 64), (20, 10)),
        ((90, 160), (80, 48), (46, 83)),
    ],
)
def test_image_prompts_are_resized_like_the_seeds(size, out, expected):
    y, x = torch.meshgrid(
        torch.linspace(0, 1, size[1]), torch.linspace(0, 1, size[0]), indexing="ij"
    )
    pixels = torch.stack([x, y, x * y]).mul(255).round().to(torch.uint8).permute(1, 2, 0)
    image = Image.fromarray(pixels.numpy())
    fitted = fit_area(image, out)
    assert fitted.size == expected == seed_resize_image(image, out).size
    assert fitted.tobytes() == seed_resize_image(image, out).tobytes()


def test_a_generation_embeds_image_prompts_at_their_own_aspect_ratio(tiny_models, monkeypatch):
    shapes = []
    original = ReferenceCutouts.__call__

    def recording(self, image, generator):
        shapes.append(tuple(image.shape[-2:]))
        return original(self, image, generator)

    monkeypatch.setattr(ReferenceCutouts, "__call__", recording)
    params = GenerationParams(prompts="", width=64, height=64, cutn=4, seed=0)
    Generation(
        tiny_models,
        params,
        device=CPU,
        options=REFERENCE,
        image_prompts=[Image.new("RGB", (400, 100))],
    )
    assert shapes == [(32, 128)]  # (H, W): 4:1 kept, area 64 * 64, not stretched to 64x64


def test_image_prompt_stops_stop_the_pull(tiny_models):
    image = Image.fromarray(
        torch.randint(
            0, 256, (40, 40, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
        ).numpy()
    )

    def z_gradient(stops):
        params = GenerationParams(
            prompts="", width=32, height=32, cutn=4, seed=0, image_prompt_stops=stops
        )
        run = Generation(tiny_models, params, device=CPU, options=REFERENCE, image_prompts=[image])
        loss = run.loss()
        loss.backward()
        return float(loss.detach()), run.z.grad

    free_loss, free = z_gradient([])
    assert float(free.abs().sum()) > 0
    # Distances are at most 2 * (pi / 2) ** 2 < 5: a stop of 5 is always reached, the value stays.
    stopped_loss, stopped = z_gradient([5.0])
    assert stopped_loss == pytest.approx(free_loss) and float(stopped.abs().sum()) == 0
    assert z_gradient([None])[0] == pytest.approx(free_loss)


def test_image_prompt_stops_are_checked():
    with pytest.raises(ValueError, match="finite"):
        GenerationParams(prompts="x", image_prompt_stops=[math.inf])
    with pytest.raises(ValueError, match="image_prompt_stops has 1 entries for 2"):
        GenerationParams(prompts="x", image_prompt_weights=[1.0, 2.0], image_prompt_stops=[0.5])
    assert GenerationParams(prompts="x", image_prompt_stops=[None, 0.5]).image_prompt_stops == [
        None,
        0.5,
    ]


def test_image_prompt_stops_must_match_the_images(tiny_models):
    params = GenerationParams(prompts="", width=32, height=32, cutn=2, image_prompt_stops=[0.1])
    with pytest.raises(ValueError, match="image_prompt_stops has 1 stops for 2 image prompts"):
        Generation(tiny_models, params, device=CPU, image_prompts=[Image.new("RGB", (8, 8))] * 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("style.png", ("style.png", 1.0, None)),
        ("style.png:0.5", ("style.png", 0.5, None)),
        ("style.png:0.5:0.2", ("style.png", 0.5, 0.2)),
        ("C:\\pictures\\style.png:-1", ("C:\\pictures\\style.png", -1.0, None)),
        ("odd:name.png", ("odd:name.png", 1.0, None)),
    ],
)
def test_cli_image_prompts_take_weight_and_stop(value, expected):
    from artgen.cli_common import parse_image_prompt

    path, weight, stop = parse_image_prompt(value)
    assert (str(path), weight, stop) == expected
