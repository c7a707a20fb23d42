"""load_models' weight layout and use_layout (CPU; the CUDA side is in tests/engine/test_gpu.py)."""

from pathlib import Path

import torch
from torch import nn

from artgen.models.catalog import Catalog
from artgen.models.loading import load_models, use_layout


def conv_weights(module: nn.Module) -> list[torch.Tensor]:
    """Conv weights with a kernel wider than 1 (1x1 kernels look contiguous in both layouts)."""
    weights = [p for p in module.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert weights
    return weights


def test_load_models_on_cpu_keeps_the_plain_layout_and_use_layout_switches(tmp_path: Path) -> None:
    models = load_models("tiny", ["tiny"], torch.device("cpu"), Catalog(tmp_path))
    assert all(weight.is_contiguous() for weight in conv_weights(models.vqgan))
    use_layout(models, channels_last=True)
    for weight in conv_weights(models.vqgan):
        assert weight.is_contiguous(memory_format=torch.channels_last)
        assert not weight.is_contiguous()
    use_layout(models, channels_last=False)
    assert all(weight.is_contiguous() for weight in conv_weights(models.vqgan))
