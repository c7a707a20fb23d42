"""Batched generations equal each generation run alone."""

import pytest
import torch

from artgen.engine.batch import BatchGeneration
from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams

CPU = torch.device("cpu")
FAST = EngineOptions(fast=True)


def make(models, **fields):
    values = {"prompts": "a castle", "width": 32, "height": 32, "seed": 0, "cutn": 4}
    return Generation(models, GenerationParams(**{**values, **fields}), device=CPU, options=FAST)


JOBS = [
    {"prompts": "a castle", "seed": 0},
    {"prompts": "the sea:2 | fog:-1", "seed": 1, "step_size": 0.3},
    {"prompts": "a forest", "seed": 2, "cutn": 6, "optimizer": "adamw", "init_weight": 0.5},
]


def test_batch_equals_each_alone(tiny_models):
    alone = [make(tiny_models, **job) for job in JOBS]
    alone_losses = [[float(g.step().loss) for _ in range(4)] for g in alone]

    members = [make(tiny_models, **job) for job in JOBS]
    batch = BatchGeneration(tiny_models, members, device=CPU)
    batch_losses = [[] for _ in members]
    for _ in range(4):
        for losses, result in zip(batch_losses, batch.step(), strict=True):
            losses.append(float(result.loss))

    for single, member, single_losses, member_losses in zip(
        alone, members, alone_losses, batch_losses, strict=True
    ):
        assert member.iteration == 4
        assert member_losses == pytest.approx(single_losses, rel=1e-4, abs=1e-5)
        assert torch.allclose(member.z, single.z, atol=1e-4)


def test_members_join_and_leave(tiny_models):
    first, second = make(tiny_models, seed=0), make(tiny_models, seed=1)
    batch = BatchGeneration(tiny_models, [first], device=CPU)
    batch.step()
    batch.add(second)
    batch.step()
    batch.remove(first)
    batch.step()
    assert (first.iteration, second.iteration) == (2, 2)
    assert batch.step()[0].iteration == 3


def test_members_must_share_the_size(tiny_models):
    batch = BatchGeneration(tiny_models, [make(tiny_models)], device=CPU)
    with pytest.raises(ValueError, match="one size"):
        batch.add(make(tiny_models, width=64))
