"""cli_progress: the bars read the loss at most every LOSS_READ_SECONDS, and always at the end."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from artgen import cli_progress
from artgen.cli_progress import LOSS_READ_SECONDS, AnimationProgress, GenerateProgress


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(cli_progress.time, "monotonic", clock)
    return clock


def test_generate_progress_reads_the_loss_sparingly_and_at_the_end(clock: Clock) -> None:
    reads: list[int] = []

    def loss_at(iteration: int) -> float:
        reads.append(iteration)
        return iteration / 10

    with GenerateProgress(4) as progress:
        progress.update(1, lambda: loss_at(1))  # the first read
        progress.update(2, lambda: loss_at(2))  # too soon: not read
        clock.now += LOSS_READ_SECONDS
        progress.update(3, lambda: loss_at(3))
        progress.update(4, lambda: loss_at(4))  # the last iteration: always read
    assert reads == [1, 3, 4] and progress.loss == 0.4


@dataclass
class FakeAnimation:
    iteration: int = 0
    frame: int = 0
    frames: int = 3
    frame_done: int | None = None
    frame_iteration: int = 0
    frame_iterations: int = 2


def test_animation_progress_reads_the_loss_when_a_frame_is_done(clock: Clock) -> None:
    reads: list[int] = []
    animation = FakeAnimation()
    with AnimationProgress("animating", 6, animation.frames) as progress:
        for iteration in range(1, 7):
            animation.iteration = iteration
            animation.frame, animation.frame_iteration = divmod(iteration, 2)
            animation.frame_done = animation.frame - 1 if iteration % 2 == 0 else None
            progress.update(animation, lambda i=iteration: float(reads.append(i) or i))
    # The first update reads; then only the frames' ends (2, 4, 6): the clock did not move.
    assert reads == [1, 2, 4, 6]
