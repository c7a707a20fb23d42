"""One attempt of an animation or restyle job inside a worker: an engine Animation as a JobRun.

Each finished frame leaves as a PNG under its own queue key (written with retries, before the
checkpoint that counts it), so the collector writes every frame to disk however lossy progress
reports are; a checkpoint is taken at every frame boundary, so a new attempt resumes at the last
finished frame. The worker steps an animation alone (SoloStep): batching is for pictures.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from artgen.engine.animation import Animation
from artgen.engine.generate import StepResult
from artgen.jobs.job_run import JobRun, Put, host_image, pil_image
from artgen.jobs.queue import Keys
from artgen.jobs.reports import Frame, Result, Sign
from artgen.jobs.schemas import JobCreate, JobKind
from artgen.jobs.task_inputs import TaskInputs
from artgen.media import encode_png
from artgen.models.loading import Models
from artgen.videos import SequentialFrames, VideoLimits

logger = logging.getLogger("artgen.jobs.worker")

# A frame must reach the queue: its put is retried this many times, backing off up to 5 s.
FRAME_PUT_ATTEMPTS = 20


class FrameLost(RuntimeError):
    """A finished frame could not be written to the queue (it stayed unreachable)."""


class SoloStep:
    """Steps one animation on its own, shaped like the BatchGeneration the worker loop drives."""

    def __init__(self, animation: Animation) -> None:
        self.generations: list[Any] = [animation]

    def step(self) -> list[StepResult]:
        """One iteration of the animation (none once it left)."""
        return [generation.step() for generation in self.generations]

    def add(self, generation: Any) -> None:
        """Animations never share a step."""
        raise ValueError("an animation steps alone")

    def remove(self, generation: Any) -> None:
        """Take the animation out (it ended)."""
        self.generations.remove(generation)


def _source_frames(
    data: bytes | None, limits: VideoLimits
) -> tuple[tempfile.TemporaryDirectory[str] | None, SequentialFrames | None]:
    """A restyle's source video (bytes from the task's inputs) in a temp file, opened."""
    if not data:
        return None, None
    directory = tempfile.TemporaryDirectory(prefix="artgen-source-")
    path = Path(directory.name) / "source"
    path.write_bytes(data)
    try:
        return directory, SequentialFrames(path, limits)
    except BaseException:
        directory.cleanup()
        raise


@dataclass
class AnimationRun(JobRun):
    """A JobRun whose generation is an engine Animation (frames, not one picture)."""

    _source_dir: tempfile.TemporaryDirectory[str] | None = None
    _source: SequentialFrames | None = None
    _frame_error: BaseException | None = None

    @classmethod
    def start(  # type: ignore[override]
        cls,
        job_id: str,
        attempt: int,
        payload: Mapping[str, Any],
        models: Models,
        *,
        device: torch.device,
        put: Put,
        sign: Callable[[], Sign],
        timeout_seconds: float,
        checkpoint_every: int,
        video_limits: VideoLimits,
        encoder: Executor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> AnimationRun:
        """Build the Animation (resuming from the payload's checkpoint) and report progress."""
        request = JobCreate.model_validate(payload["params"])
        if request.kind == JobKind.restyle and not payload.get("source_video"):
            raise ValueError(f"job {job_id}: a restyle task without its source video")
        source_dir, source = _source_frames(payload.get("source_video"), video_limits)
        try:
            inputs = TaskInputs.of(payload)
            animation = Animation(
                models,
                request.generation_params(),
                request.animation_params(),
                device=device,
                init_image=inputs.init_image,
                image_prompts=inputs.image_prompts,
                source=source,
                should_stop=should_stop,
            )
            if inputs.resume_state is not None:
                animation.load_state_dict(inputs.resume_state)
        except BaseException:
            _close_source(source_dir, source)
            raise
        # Later frames' setups are not cut short: a cancel is seen between steps.
        animation.should_stop = None
        started = time.monotonic()
        run = cls(
            job_id=job_id,
            attempt=attempt,
            request=request,
            generation=animation,  # type: ignore[arg-type]
            put=put,
            sign=sign,
            deadline=started + timeout_seconds,
            checkpoint_every=checkpoint_every,
            first_iteration=animation.iteration,
            started=started,
            encoder=encoder,
            _source_dir=source_dir,
            _source=source,
        )
        run.report_progress(None)
        return run

    @property
    def animation(self) -> Animation:
        """The engine's Animation this run steps."""
        return self.generation  # type: ignore[return-value]

    @property
    def iterations(self) -> int:
        """Iterations over every frame."""
        return int(self.animation.iterations)

    @property
    def first_frame(self) -> int:
        """The frame this attempt started at (above 0 when it resumed)."""
        return self._first_frame

    def __post_init__(self) -> None:
        self._first_frame = int(self.animation.frame)

    def progress_fields(self) -> dict[str, int | None]:
        """The frame being made, of how many, and the iteration within it."""
        animation = self.animation
        return {
            "frame": min(animation.frame, animation.frames - 1),
            "frames": animation.frames,
            "frame_iteration": animation.frame_iteration,
            "frame_iterations": animation.frame_iterations,
            "start_frame": self.first_frame,
        }

    def after_step(self, result: StepResult) -> None:
        """A finished frame goes out first, then progress and previews, then the boundary
        checkpoint (so no checkpoint ever counts a frame the queue has not got)."""
        if self._frame_error is not None:
            raise FrameLost("a finished frame could not be written") from self._frame_error
        done = self.animation.frame_done
        if done is not None:
            image = host_image(self.animation.frame_tensor())
            self._submit(partial(self._publish_frame, int(done), image))
        before = self._checkpoint
        super().after_step(result)
        if done is not None and not self.finished and self._checkpoint is before:
            self.checkpoint(force=True)

    def _publish_frame(self, index: int, image: Any) -> None:
        """Encode a finished frame and put it under its key, retrying while the queue is down."""
        if self._frame_error is not None:
            return
        try:
            png = encode_png(pil_image(image))
        except Exception as exc:
            logger.error("job %s: frame %s not encoded", self.job_id, index, exc_info=True)
            self._frame_error = exc
            return
        value = Frame(self.attempt, index, png)
        delay = 0.1
        for _ in range(FRAME_PUT_ATTEMPTS):
            if self.put(Keys.frame(self.job_id, self.attempt, index), value):
                return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._frame_error = FrameLost(f"frame {index} did not reach the queue")

    def _publish_checkpoint(self, snapshot: dict[str, Any]) -> None:
        # After a lost frame no checkpoint may count it: the next attempt remakes it.
        if self._frame_error is None:
            super()._publish_checkpoint(snapshot)

    def result(self) -> Result:
        """The last frame as the job's PNG (the collector assembles the MP4 from the frames)."""
        self.drain()  # every frame is in the queue before the result
        if self._frame_error is not None:
            raise FrameLost("a finished frame could not be written") from self._frame_error
        return super().result()

    def close(self) -> None:
        """Publish what is pending, then close and remove the source video's temp file."""
        super().close()
        _close_source(self._source_dir, self._source)
        self._source_dir, self._source = None, None


def _close_source(
    directory: tempfile.TemporaryDirectory[str] | None, source: SequentialFrames | None
) -> None:
    if source is not None:
        try:
            source.close()
        except Exception:
            logger.warning("source video reader did not close cleanly", exc_info=True)
    if directory is not None:
        directory.cleanup()
