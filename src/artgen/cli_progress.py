"""The commands' progress bars (rich, on stderr): one for a picture, one for a video.

The loss is read at most 4 times a second (and at the end): reading it syncs the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Seconds between two reads of the loss.
LOSS_READ_SECONDS = 0.25


class AnimationState(Protocol):
    """What AnimationProgress reads of an animation (the engine's, or a remote job's events)."""

    @property
    def iteration(self) -> int: ...
    @property
    def frame(self) -> int: ...
    @property
    def frames(self) -> int: ...
    @property
    def frame_done(self) -> int | None: ...
    @property
    def frame_iteration(self) -> int: ...
    @property
    def frame_iterations(self) -> int: ...


class _LossBar:
    """A started-on-enter rich bar over `total` iterations with a throttled loss field."""

    def __init__(
        self, label: str, total: int, columns: list[ProgressColumn], **fields: Any
    ) -> None:
        self._progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            *columns,
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task(label, total=total, loss="-", **fields)
        self._last_loss_read = 0.0

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _loss_due(self, final: bool) -> bool:
        """Whether to read the loss now (always at the end); notes the read."""
        now = time.monotonic()
        if final or now - self._last_loss_read >= LOSS_READ_SECONDS:
            self._last_loss_read = now
            return True
        return False


class GenerateProgress(_LossBar):
    """A picture's bar: iterations done of all, loss, ETA; `loss` keeps the last value read."""

    def __init__(self, iterations: int) -> None:
        super().__init__("generating", iterations, [MofNCompleteColumn()])
        self._iterations = iterations
        self.loss: float | None = None

    def update(self, iteration: int, read_loss: Callable[[], Any]) -> None:
        """Advance to `iteration`; `read_loss()` syncs the device, so it is called sparingly."""
        if self._loss_due(iteration == self._iterations):
            self.loss = float(read_loss())
            self._progress.update(self._task, loss=f"{self.loss:.4f}")
        self._progress.update(self._task, completed=iteration)


class AnimationProgress(_LossBar):
    """A video's bar over every iteration of it, with the frame and the iteration in it."""

    def __init__(self, label: str, iterations: int, frames: int) -> None:
        columns: list[ProgressColumn] = [
            TextColumn("frame {task.fields[frame]}/{task.fields[frames]}"),
            TextColumn("iteration {task.fields[step]}"),
        ]
        super().__init__(label, iterations, columns, frame=1, frames=frames, step="-")

    def update(self, animation: AnimationState, read_loss: Callable[[], float]) -> None:
        """Show where `animation` stands; `read_loss()` syncs the device, so call it sparingly."""
        fields: dict[str, Any] = {}
        if self._loss_due(animation.frame_done is not None):
            fields["loss"] = f"{read_loss():.4f}"
        shown_frame = min(animation.frame, animation.frames - 1) + 1
        step = f"{animation.frame_iteration}/{animation.frame_iterations}"
        self._progress.update(
            self._task, completed=animation.iteration, frame=shown_frame, step=step, **fields
        )
