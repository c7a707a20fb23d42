"""EngineOptions: None decided for the device and size; CUDA-only parts refused on the reference."""

import pytest
import torch

from artgen.engine.batch import BatchGeneration
from artgen.engine.generate import Generation
from artgen.engine.options import RECOMPUTE_PIXELS, EngineOptions
from artgen.engine.params import GenerationParams

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # resolving options touches no device


def test_defaults_are_the_reference_on_a_cpu_and_the_whole_fast_path_on_cuda():
    assert EngineOptions().resolved(CPU, 64 * 64) == EngineOptions(
        fast=False, recompute_decoder=False, bf16=False, channels_last=False, fused_optimizer=False
    )
    assert EngineOptions().resolved(CUDA, 64 * 64) == EngineOptions(
        fast=True, recompute_decoder=False, bf16=True, channels_last=True, fused_optimizer=True
    )


def test_fast_on_a_cpu_has_no_cuda_only_parts_and_explicit_values_win():
    fast_cpu = EngineOptions(fast=True).resolved(CPU, 64 * 64)
    assert fast_cpu.fast and not (fast_cpu.bf16 or fast_cpu.channels_last)
    fp32_cuda = EngineOptions(bf16=False, compile="reduce-overhead").resolved(CUDA, 64 * 64)
    assert fp32_cuda.bf16 is False and fp32_cuda.channels_last is True
    assert fp32_cuda.compile == "reduce-overhead"


def test_decoder_recomputation_by_default_only_for_large_fast_images():
    assert EngineOptions(fast=True).resolved(CPU, RECOMPUTE_PIXELS + 1).recompute_decoder
    assert not EngineOptions(fast=True).resolved(CPU, RECOMPUTE_PIXELS).recompute_decoder
    assert not EngineOptions(fast=False).resolved(CPU, RECOMPUTE_PIXELS + 1).recompute_decoder
    assert EngineOptions(recompute_decoder=True).resolved(CPU, 16).recompute_decoder


@pytest.mark.parametrize("name", ["bf16", "channels_last", "fused_optimizer"])
def test_cuda_only_parts_are_refused_on_the_reference_path(name):
    with pytest.raises(ValueError, match=f"{name} is a fast-path option"):
        EngineOptions(fast=False, **{name: True}).resolved(CUDA, 64 * 64)


def test_a_generation_keeps_its_resolved_options(tiny_models):
    params = GenerationParams(prompts="a", width=32, height=32, seed=0, cutn=4)
    generation = Generation(tiny_models, params, device=CPU, options=EngineOptions(fast=True))
    assert generation.options == EngineOptions(fast=True).resolved(CPU, 32 * 32)
    assert generation.fast and not generation.recompute_decoder


def test_a_batch_refuses_a_member_that_computes_differently(tiny_models):
    params = GenerationParams(prompts="a", width=32, height=32, seed=0, cutn=4)
    plain = Generation(tiny_models, params, device=CPU, options=EngineOptions(fast=True))
    recomputed = Generation(
        tiny_models, params, device=CPU, options=EngineOptions(fast=True, recompute_decoder=True)
    )
    batch = BatchGeneration(tiny_models, [plain], device=CPU)
    with pytest.raises(ValueError, match="batch members must compute alike"):
        batch.add(recomputed)
