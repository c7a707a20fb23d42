"""Engine test setup: one CPU thread (the machine's 2 cores are shared; extra threads only spin)."""

import pytest
import torch

from artgen.models.loading import random_models


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# TEMPORARY: stands in for tests/conftest.py's tiny_models until it lands.
@pytest.fixture(scope="session")
def tiny_models():
    return random_models("tiny", torch.device("cpu"))
