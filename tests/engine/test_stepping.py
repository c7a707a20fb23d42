"""step_batch (the one stepping function of run and the worker) and run."""

import torch

from artgen.engine.batch import BatchGeneration
from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.engine.stepping import StepInfo, run, step_batch

CPU = torch.device("cpu")


def make(models, **fields):
    values = {"prompts": "a castle", "width": 32, "height": 32, "seed": 0, "cutn": 4}
    params = GenerationParams(**{**values, **fields})
    return Generation(models, params, device=CPU, options=EngineOptions(fast=True))


def test_members_leave_once_they_have_done_their_iterations(tiny_models):
    short, long = make(tiny_models, iterations=2), make(tiny_models, iterations=3, seed=1)
    batch = BatchGeneration(tiny_models, [short, long], device=CPU)
    assert [result.iteration for result in step_batch(batch)] == [1, 1]
    assert batch.generations == [short, long]
    assert [result.iteration for result in step_batch(batch)] == [2, 2]
    assert batch.generations == [long]
    assert [result.iteration for result in step_batch(batch)] == [3]
    assert batch.generations == []
    assert step_batch(batch) == []
    assert (short.iteration, long.iteration) == (2, 3)


def test_run_equals_stepping_by_hand(tiny_models):
    by_hand = make(tiny_models, iterations=3)
    losses = [float(by_hand.step().loss) for _ in range(3)]
    infos: list[StepInfo] = []
    generation = make(tiny_models, iterations=3)
    image = run(generation, callback=infos.append)
    assert [info.loss() for info in infos] == losses
    assert torch.equal(generation.z, by_hand.z)
    assert image.tobytes() == by_hand.image().tobytes()


def test_run_of_a_finished_generation_steps_no_more(tiny_models):
    generation = make(tiny_models, iterations=2)
    run(generation)
    z = generation.z.detach().clone()
    infos: list[StepInfo] = []
    run(generation, callback=infos.append)
    assert generation.iteration == 2 and infos == []
    assert torch.equal(generation.z, z)
