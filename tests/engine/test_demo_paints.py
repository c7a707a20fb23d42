"""The demo models paint what a prompt asks: "a red square on a blue background" (64x64, CPU).

Judged procedurally: each pixel is named after the nearest palette colour of the training
pictures; the border should be the background's colour and a region inside the shape's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artgen.engine.generate import Generation
from artgen.engine.params import GenerationParams
from artgen.engine.stepping import run
from artgen.models.catalog import Catalog
from artgen.models.loading import load_models
from artgen.training.shapes import COLOURS

PALETTE = np.array(list(COLOURS.values()), dtype=float)  # (8, 3)
NAMES = list(COLOURS)
ITERATIONS = 60


def nearest_colours(pixels: np.ndarray) -> np.ndarray:
    """The palette index nearest to each RGB pixel: (..., 3) -> (...)."""
    return np.linalg.norm(pixels[..., None, :] - PALETTE, axis=-1).argmin(-1)


@pytest.fixture(scope="module")
def painted(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Palette names (64, 64) of "a red square on a blue background" painted by the demo models."""
    cpu = torch.device("cpu")
    catalog = Catalog(Path(tmp_path_factory.mktemp("home")))
    models = load_models("demo", ["demo"], cpu, catalog)
    params = GenerationParams(
        prompts="a red square on a blue background",
        width=64,
        height=64,
        iterations=ITERATIONS,
        seed=0,
        cutn=16,
    )
    image = run(Generation(models, params, device=cpu))
    return nearest_colours(np.asarray(image.convert("RGB"), dtype=float))


def test_the_border_is_blue(painted: np.ndarray):
    border = np.concatenate(
        [painted[:3].ravel(), painted[-3:].ravel(), painted[:, :3].ravel(), painted[:, -3:].ravel()]
    )
    counts = np.bincount(border, minlength=len(NAMES))
    assert (border == NAMES.index("blue")).mean() > 0.6, dict(zip(NAMES, counts, strict=True))


def test_a_red_region_exists(painted: np.ndarray):
    inside = painted[8:-8, 8:-8]
    counts = np.bincount(inside.ravel(), minlength=len(NAMES))
    assert (inside == NAMES.index("red")).mean() > 0.05, dict(zip(NAMES, counts, strict=True))
