"""The quality judge: what a picture of a coloured shape shows, measured without the guiding CLIP.

Two independent parts (nothing here has seen the CLIP that guided a picture):

- `read_colours`: a procedural measurement. The background is the palette colour most border
  pixels are nearest to; the shape's colour is the palette colour most of the pixels that differ
  most from the background are nearest to.
- `ShapeClassifier`: a small CNN trained by `train_classifier` on `shapes.draw` pictures with
  blur, noise, colour shifts and warps (so it transfers to generated pictures). It sees only the
  foreground map (each pixel's distance from the border colour), so colour cannot leak into it.
  The shipped weights (`judge_shapes.pt`, 0.25 MB) are reproduced from seed 0 by
  `python -m artgen.training.judge --train` (1500 steps: 400 s on one thread of a loaded 2-core
  CPU), which refuses to write weights that score <= 95% on fresh clean drawings.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from artgen.training import shapes

WEIGHTS = Path(__file__).resolve().parent / "judge_shapes.pt"
SIDE = 64  # the classifier's input side: every picture is resized to it
BORDER = 1 / 16  # the border ring's width as a fraction of the side
# Pixels count as the shape when their distance from the background is at least this fraction of
# the largest distance in the picture (the shape's core, not its blurred edge) ...
CORE_FRACTION = 0.5
# ... and at least this far from it in RGB (0-255; half the closest palette pair, orange-yellow).
MIN_DISTANCE = 40.0


@dataclass(frozen=True)
class ColourReading:
    """What `read_colours` measured."""

    background: str
    colour: str | None  # None: no pixel differs enough from the background
    shape_fraction: float  # share of the pixels counted as the shape


def _palette_array(palette: Mapping[str, tuple[int, int, int]]) -> tuple[list[str], np.ndarray]:
    names = list(palette)
    return names, np.array([palette[name] for name in names], dtype=np.float32)  # (P, 3)


def _nearest(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for each pixel: (N, 3) -> (N,)."""
    distances = ((pixels[:, None, :] - colours[None, :, :]) ** 2).sum(-1)  # (N, P)
    return distances.argmin(1)


def border_pixels(array: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring (width BORDER of the side, at least 1): (H, W, 3) -> (N, 3)."""
    height, width = array.shape[:2]
    ring = max(1, round(min(height, width) * BORDER))
    mask = np.zeros((height, width), dtype=bool)
    mask[:ring], mask[-ring:], mask[:, :ring], mask[:, -ring:] = True, True, True, True
    return array[mask]


def read_colours(
    image: Image.Image, palette: Mapping[str, tuple[int, int, int]] = shapes.COLOURS
) -> ColourReading:
    """Background colour from the border pixels; shape colour from the pixels unlike it."""
    names, colours = _palette_array(palette)
    array = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    # 1. Background: the palette colour most border pixels are nearest to (a shape touching the
    #    border covers only a minority of it), and its measured RGB (median of those pixels).
    border = border_pixels(array)
    border_labels = _nearest(border, colours)
    background = int(np.bincount(border_labels, minlength=len(names)).argmax())
    background_rgb = np.median(border[border_labels == background], axis=0)  # (3,)
    # 2. Shape: the pixels far from the background, voted among the other palette colours.
    pixels = array.reshape(-1, 3)
    distance = np.sqrt(((pixels - background_rgb) ** 2).sum(-1))  # (H*W,)
    threshold = max(MIN_DISTANCE, CORE_FRACTION * float(distance.max()))
    core = pixels[distance >= threshold]
    if len(core) == 0:
        return ColourReading(names[background], None, 0.0)
    others = np.array([i for i in range(len(names)) if i != background])
    votes = np.bincount(others[_nearest(core, colours[others])], minlength=len(names))
    return ColourReading(names[background], names[int(votes.argmax())], len(core) / len(pixels))


def foreground_map(images: Tensor) -> Tensor:
    """Each pixel's distance from the picture's border colour, scaled to [0, 1].

    images (B, 3, H, W) in [0, 1] -> (B, 1, H, W); the border colour is the per-channel median
    of the border ring, and each map is divided by its own maximum (so no colour survives).
    """
    batch, _, height, width = images.shape
    ring = max(1, round(min(height, width) * BORDER))
    mask = torch.zeros(height, width, dtype=torch.bool, device=images.device)
    mask[:ring], mask[-ring:], mask[:, :ring], mask[:, -ring:] = True, True, True, True
    border = images[:, :, mask]  # (B, 3, N)
    background = border.median(dim=2).values[:, :, None, None]  # (B, 3, 1, 1)
    distance = (images - background).pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, H, W)
    return distance / distance.amax(dim=(2, 3), keepdim=True).clamp_min(0.05)


class ShapeClassifier(nn.Module):
    """A small CNN: foreground map (B, 1, 64, 64) -> logits over `shapes.SHAPES` (B, 4)."""

    def __init__(self, width: int = 16, classes: int = len(shapes.SHAPES)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [1, width, width * 2, width * 4, width * 4]
        for index, (inputs, outputs) in enumerate(zip(channels, channels[1:], strict=False)):
            layers += [nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU()]
            if index < len(channels) - 2:
                layers.append(nn.MaxPool2d(2))  # 64 -> 32 -> 16 -> 8
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1], classes)

    def forward(self, maps: Tensor) -> Tensor:
        features = self.features(maps).mean(dim=(2, 3))  # (B, C): position-free
        return self.head(features)  # (B, classes)


def to_batch(images: Sequence[Image.Image]) -> Tensor:
    """PIL pictures (any size) -> (B, 3, SIDE, SIDE) in [0, 1]."""
    arrays = [
        np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR))
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


class ShapeJudge:
    """The trained classifier behind one call: pictures -> shape names."""

    def __init__(self, classifier: ShapeClassifier) -> None:
        self.classifier = classifier.eval().requires_grad_(False)

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> ShapeJudge:
        if not path.is_file():
            raise FileNotFoundError(
                f"shape judge weights {path} are missing; train them with "
                "`python -m artgen.training.judge --train`"
            )
        classifier = ShapeClassifier()
        classifier.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(classifier)

    @torch.no_grad()
    def probabilities(self, images: Sequence[Image.Image]) -> Tensor:
        """(B, 4) class probabilities, in `shapes.SHAPES` order."""
        return self.classifier(foreground_map(to_batch(images))).softmax(-1)

    def classify(self, images: Sequence[Image.Image]) -> list[str]:
        return [shapes.SHAPES[int(i)] for i in self.probabilities(images).argmax(-1)]


# ---- training ------------------------------------------------------------------------------


def _blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur with a per-image sigma (B,) in pixels (0 leaves an image unchanged)."""
    radius = 4
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)  # (B, K)
    batch, channels, height, width = images.shape
    flat = images.reshape(1, batch * channels, height, width)
    weights = kernels.repeat_interleave(channels, 0)  # (B*C, K)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = F.conv2d(flat, weights[:, None, None, :], groups=batch * channels)
    flat = F.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = F.conv2d(flat, weights[:, None, :, None], groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """What generated pictures do to a clean drawing: warps, blur, blockiness, colour, noise.

    images (B, 3, S, S) in [0, 1] -> the same shape, each image with its own random draws.
    """
    batch = images.shape[0]

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(batch, *shape, generator=generator)

    # 1. A mild affine warp (rotation, scale, shear), edge pixels repeated.
    angle = uniform(-0.3, 0.3)
    scale = uniform(0.85, 1.15)
    shear = uniform(-0.15, 0.15)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, uniform(-0.1, 0.1)], 1),
         torch.stack([sin, cos, uniform(-0.1, 0.1)], 1)], 1,
    )  # fmt: skip
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    # 2. Blockiness: some pictures go down to 1/2 or 1/4 of the side and back (a coarse decoder).
    side = images.shape[-1]
    for factor, share in ((2, 0.25), (4, 0.15)):
        chosen = torch.rand(batch, generator=generator) < share
        if chosen.any():
            small = F.interpolate(images[chosen], size=side // factor, mode="area")
            images[chosen] = F.interpolate(small, size=side, mode="bilinear", align_corners=False)
    # 3. Blur.
    images = _blur(images, uniform(0.0, 1.8) * (torch.rand(batch, generator=generator) < 0.7))
    # 4. Colour: per-channel gain and bias, contrast towards the mean.
    images = images * uniform(0.75, 1.25, 3, 1, 1) + uniform(-0.12, 0.12, 3, 1, 1)
    contrast = uniform(0.6, 1.1, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * contrast + mean
    # 5. Noise: white and low-frequency (the blotches an optimised latent leaves).
    images = images + uniform(0.0, 0.08, 1, 1, 1) * torch.randn(images.shape, generator=generator)
    blotches = torch.randn(batch, 3, side // 8, side // 8, generator=generator)
    blotches = F.interpolate(blotches, size=side, mode="bilinear", align_corners=False)
    images = images + uniform(0.0, 0.08, 1, 1, 1) * blotches
    return images.clamp(0, 1)


def drawn_set(count: int, seed: int, side: int = SIDE) -> tuple[Tensor, Tensor]:
    """`count` random drawings (training and held-out combinations alike) and their shape labels.

    The judge is not a demo model: it may see every combination, held-out ones included; only
    the demo VQGAN and CLIP must not.
    """
    rng = random.Random(seed)
    pictures, labels = [], []
    for _ in range(count):
        scene = shapes.random_scene(rng, held_out=rng.random() < 0.1)
        pictures.append(shapes.draw(scene, side, rng))
        labels.append(shapes.SHAPES.index(scene.shape))
    return to_batch(pictures), torch.tensor(labels)


@dataclass
class TrainReport:
    steps: int
    seconds: float
    clean_accuracy: float  # on fresh drawings (another seed)
    augmented_accuracy: float  # the same drawings, augmented


def accuracy(classifier: ShapeClassifier, images: Tensor, labels: Tensor) -> float:
    classifier.eval()
    with torch.no_grad():
        predicted = classifier(foreground_map(images)).argmax(-1)
    return float((predicted == labels).float().mean())


def train_classifier(
    steps: int = 1500,
    batch_size: int = 64,
    pictures: int = 6000,
    seed: int = 0,
    test_pictures: int = 1000,
) -> tuple[ShapeClassifier, TrainReport]:
    """Train the shape classifier from `seed` on augmented drawings; deterministic on the CPU."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = drawn_set(pictures, seed)
    classifier = ShapeClassifier()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    start = time.perf_counter()
    for _ in range(steps):
        classifier.train()
        index = torch.randint(len(images), (batch_size,), generator=generator)
        batch = augment(images[index], generator)
        # Half the batch mirrored: no shape's name depends on its handedness.
        flip = torch.rand(batch_size, generator=generator) < 0.5
        batch[flip] = batch[flip].flip(-1)
        loss = F.cross_entropy(classifier(foreground_map(batch)), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    test_images, test_labels = drawn_set(test_pictures, seed + 1)
    augmented = augment(test_images.clone(), torch.Generator().manual_seed(seed + 1))
    report = TrainReport(
        steps,
        seconds,
        accuracy(classifier, test_images, test_labels),
        accuracy(classifier, augmented, test_labels),
    )
    return classifier.eval(), report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Train or check the quality judge's classifier.")
    parser.add_argument("--train", action="store_true", help="train and write the weights")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train:
        classifier, report = train_classifier(steps=args.steps, seed=args.seed)
        print(
            f"{report.steps} steps in {report.seconds:.0f} s: clean {report.clean_accuracy:.1%}, "
            f"augmented {report.augmented_accuracy:.1%}"
        )
        if report.clean_accuracy <= 0.95:
            print("clean accuracy <= 95%: not trusted, weights not written", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(classifier.state_dict(), args.out)
        digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
        print(f"wrote {args.out} (sha256 {digest})")
        return 0
    judge = ShapeJudge.load(args.out)
    images, labels = drawn_set(1000, args.seed + 1)
    clean = accuracy(judge.classifier, images, labels)
    print(f"clean accuracy on 1000 fresh drawings: {clean:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

__all__ = [
    "ColourReading",
    "ShapeClassifier",
    "ShapeJudge",
    "augment",
    "foreground_map",
    "read_colours",
    "train_classifier",
]
