"""The fast path on CUDA: bf16 autocast, no host sync per step, close to the fp32 reference."""

import numpy as np
import pytest
import torch

from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.models.catalog import Catalog
from artgen.models.loading import load_models, use_layout

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def cuda_models(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return load_models("tiny", ["tiny"], torch.device("cuda"), Catalog(home))


def params(**fields):
    values = {"prompts": "a castle", "width": 64, "height": 64, "seed": 0, "cutn": 8}
    return GenerationParams(**{**values, **fields})


def test_fast_step_does_not_sync(cuda_models):
    generation = Generation(cuda_models, params(), device=torch.device("cuda"))
    assert generation.fast
    generation.step()  # warm-up: caches and lazy initialisation may copy once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        results = [generation.step() for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(result.loss) for result in results)


def test_fast_bf16_follows_reference(cuda_models):
    fast = Generation(cuda_models, params(augment=False), device=torch.device("cuda"))
    reference = Generation(
        cuda_models,
        params(augment=False),
        device=torch.device("cuda"),
        options=EngineOptions(fast=False),
    )
    fast_losses = [float(fast.step().loss) for _ in range(5)]
    reference_losses = [float(reference.step().loss) for _ in range(5)]
    assert fast_losses == pytest.approx(reference_losses, rel=5e-2)


def test_large_size_uses_checkpointing_and_resumes(cuda_models):
    generation = Generation(cuda_models, params(width=768, height=768), device=torch.device("cuda"))
    generation.step()
    state = generation.state_dict()
    assert state["z"].device.type == "cpu"
    again = Generation(cuda_models, params(width=768, height=768), device=torch.device("cuda"))
    again.load_state_dict(state)
    assert again.iteration == 1 and torch.isfinite(again.step().loss)


def test_channels_last_is_set_at_load_and_generations_leave_it(tmp_path):
    def convs():
        return [p for p in models.vqgan.parameters() if p.dim() == 4 and p.shape[-1] > 1]

    models = load_models("tiny", ["tiny"], torch.device("cuda"), Catalog(tmp_path))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs())
    # A plain-layout bundle (a benchmark's reference case) stays plain under a fast generation.
    use_layout(models, channels_last=False)
    Generation(models, params(), device=torch.device("cuda")).step()
    assert all(p.is_contiguous() for p in convs())


def test_preview_copy_leaves_the_device_without_blocking_and_matches(cuda_models):
    from artgen.engine.images import to_pil
    from artgen.jobs.job_run import HostCopy, host_image, pil_image

    generation = Generation(cuda_models, params(), device=torch.device("cuda"))
    loss = generation.step().loss
    tensor = generation.image_tensor()
    image = host_image(tensor)
    assert image.tensor.is_pinned() and image.ready is not None
    assert np.array_equal(np.asarray(pil_image(image)), np.asarray(to_pil(tensor)))
    reading = HostCopy.start(loss)
    assert float(reading.wait()) == float(loss) and reading.done()
