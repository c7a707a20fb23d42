"""Shared fixtures: the tiny random-weight models every layer tests with."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from artgen.models.catalog import Catalog
from artgen.models.loading import Models, load_models


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> Iterator[None]:
    """The CI machine has two cores shared by everyone: keep torch from oversubscribing them."""
    previous = torch.get_num_threads()
    # Under pytest-xdist two test processes share the two cores: one thread each.
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def models_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty model cache dir (ARTGEN_HOME) for the session."""
    return tmp_path_factory.mktemp("artgen-home")


@pytest.fixture(scope="session")
def tiny_models(models_home: Path) -> Models:
    """The tiny VQGAN and tiny CLIP critic on CPU (random weights, seed 0; do not mutate)."""
    return load_models("tiny", ["tiny"], torch.device("cpu"), Catalog(models_home))
