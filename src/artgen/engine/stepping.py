"""The stepping loop: `step_batch` is one iteration of a batch, `run` the loop of one generation.

The worker's batch loop calls step_batch too, so the CLI and the service step alike. A batch is a
BatchGeneration, or anything shaped like one (the worker steps an animation on its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from PIL import Image

from artgen.engine.batch import BatchGeneration
from artgen.engine.generate import Generation, StepResult


@dataclass
class StepInfo:
    """What the run() callback receives."""

    iteration: int  # iterations done so far (1-based after the first step)
    iterations: int
    loss: Callable[[], float]  # syncs only when called
    image: Callable[[], Image.Image]  # decodes (the current z) only when called


class Member(Protocol):
    """What a batch steps: a Generation, or anything counted like one."""

    @property
    def iteration(self) -> int: ...  # iterations done

    @property
    def iterations(self) -> int: ...  # iterations to do in all


class Batch(Protocol):
    """Members stepped together (BatchGeneration)."""

    @property
    def generations(self) -> Sequence[Member]: ...

    def step(self) -> list[StepResult]: ...  # one iteration of every member, in member order

    def remove(self, generation: Any) -> None: ...


def step_batch(batch: Batch) -> list[StepResult]:
    """One iteration of every member (results in member order); each member that has now done
    all its iterations leaves the batch."""
    members = list(batch.generations)
    results = batch.step()
    for member in members:
        if member.iteration >= member.iterations:
            batch.remove(member)
    return results


def run(
    generation: Generation,
    callback: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Image.Image:
    """Step until params.iterations (or should_stop() is true); return the final image."""
    batch = BatchGeneration(generation.models, [generation], device=generation.device)
    if generation.iteration >= generation.iterations:
        batch.remove(generation)
    while batch.generations:
        if should_stop is not None and should_stop():
            break
        for result in step_batch(batch):
            if callback is not None:
                callback(
                    StepInfo(
                        iteration=result.iteration,
                        iterations=generation.iterations,
                        loss=partial(float, result.loss),
                        image=generation.image,
                    )
                )
    return generation.image()
