"""A video as a sequence of Generations: zoom/pan/rotate animations and restyled videos.

Frame 0 is a picture (its own iteration count). Each next frame starts from the previous frame
warped by the motion schedules at that frame (animation), or from the source video's frame blended
with the previous stylised frame by `coherence` (restyle), and is optimised for
`iterations_per_frame`. Pure: no file I/O; every frame's randomness comes from a generator seeded
from the video's seed and the frame index, so a resumed video gives the same frames.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
from PIL import Image
from torch import Tensor

from artgen.engine.animation_params import MOTION_FIELDS, AnimationParams, FramePrompt
from artgen.engine.generate import Generation, StepResult, rounded_size, tensors_to_cpu
from artgen.engine.images import from_pil, to_pil
from artgen.engine.motion import warp
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.engine.prompts import Prompt

if TYPE_CHECKING:
    from artgen.models.loading import Models

__all__ = ["Animation", "AnimationParams", "FramePrompt", "FrameSource", "frame_seed"]

STATE_VERSION = 1


class FrameSource(Protocol):
    """The frames of a source video (restyle), asked for in increasing order."""

    def frame(self, index: int) -> Image.Image: ...


def frame_seed(seed: int, frame: int) -> int:
    """The seed of frame `frame` of a video with `seed`: frame 0 uses the seed itself (so it is
    the picture that seed gives), later frames a hash of both (below 2**63)."""
    if frame == 0:
        return seed
    digest = hashlib.sha256(f"artgen-frame/{seed}/{frame}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Animation:
    """A video being made: the current frame's Generation plus the previous finished frame."""

    def __init__(
        self,
        models: Models,
        params: GenerationParams,
        animation: AnimationParams,
        *,
        device: torch.device,
        init_image: Image.Image | None = None,
        image_prompts: Sequence[Image.Image] = (),
        source: FrameSource | None = None,
        fast: bool | None = None,
        options: EngineOptions | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Set up frame 0 (a restyle starts it from source.frame(0); init_image is then unused).
        `options` choose how each frame's Generation computes (`fast` is EngineOptions(fast=)).
        Like Generation, raises SetupStopped when `should_stop` answers True while embedding;
        step() may raise it too, when it sets up the next frame."""
        self.models, self.params, self.animation = models, params, animation
        self.device = torch.device(device)
        self.image_prompts = tuple(image_prompts)
        self.source = source
        self.options = options if options is not None else EngineOptions(fast=fast)
        self.should_stop = should_stop
        self.seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.width, self.height = rounded_size(params.width, params.height, models.vqgan.factor)
        self._motion = {name: animation.keyframes(name) for name in MOTION_FIELDS}
        # Each distinct prompt text is embedded once for the whole video.
        self._text_embeddings: dict[str, list[list[Prompt]]] = {}

        self.frames = animation.frames
        self.iterations = animation.total_iterations(params.iterations)
        self.iteration = 0
        self.frame = 0
        self.frame_iteration = 0
        self.frame_iterations = self.iterations_of(0)
        self.frame_done: int | None = None
        self._previous: Tensor | None = None  # the latest finished frame (1, 3, H, W) in [0, 1]
        start = source.frame(0) if source is not None else init_image
        self._generation: Generation | None = self._frame_generation(0, start)

    @property
    def generation(self) -> Generation | None:
        """The current frame's Generation; None between frames (set up at the next step())."""
        return self._generation

    def iterations_of(self, frame: int) -> int:
        """The iterations frame `frame` gets: the picture's count for frame 0."""
        return self.params.iterations if frame == 0 else self.animation.iterations_per_frame

    def frame_params(self, frame: int) -> GenerationParams:
        """Frame `frame`'s GenerationParams: its prompts, iterations and seed (story-mode
        `schedule` applies within frame 0, the picture, only)."""
        update: dict[str, Any] = {
            "prompts": self.animation.prompts_at(frame, self.params.prompts),
            "iterations": self.iterations_of(frame),
            "seed": frame_seed(self.seed, frame),
        }
        if frame > 0:
            update["schedule"] = []
        return self.params.model_copy(update=update)

    def motion_at(self, frame: int) -> dict[str, float]:
        """warp()'s arguments for the step into `frame`."""
        return {
            "zoom": self._motion["zoom"].at(frame),
            "angle": self._motion["angle"].at(frame),
            "translate_x": self._motion["translation_x"].at(frame),
            "translate_y": self._motion["translation_y"].at(frame),
        }

    def _frame_generation(self, frame: int, start: Image.Image | None) -> Generation:
        return Generation(
            self.models,
            self.frame_params(frame),
            device=self.device,
            init_image=start,
            image_prompts=self.image_prompts,
            options=self.options,
            should_stop=self.should_stop,
            text_embeddings=self._text_embeddings,
        )

    @torch.no_grad()
    def start_image(self, frame: int) -> Image.Image:
        """Where frame `frame` > 0 starts: the previous frame moved (animation) or the source
        frame blended with it (restyle)."""
        previous = self.frame_tensor()
        if self.source is None:
            return to_pil(warp(previous, **self.motion_at(frame)))
        source = from_pil(self.source.frame(frame), (self.width, self.height)).to(self.device)
        coherence = self.animation.coherence
        return to_pil(previous * coherence + source * (1 - coherence))

    def _current(self) -> Generation:
        """The current frame's Generation, set up now if the last step finished a frame."""
        if self._generation is None:
            if self.frame >= self.frames:
                raise RuntimeError(f"the animation is finished ({self.frames} frames)")
            self._generation = self._frame_generation(self.frame, self.start_image(self.frame))
        return self._generation

    def step(self) -> StepResult:
        """One iteration of the current frame; `frame_done` says whether it finished a frame.
        The result's iteration counts over all frames."""
        generation = self._current()
        result = generation.step()
        self.iteration += 1
        self.frame_iteration = generation.iteration
        self.frame_done = None
        if self.frame_iteration >= self.frame_iterations:
            self._previous = generation.image_tensor().detach()
            self._generation = None  # the next frame is set up at the next step()
            self.frame_done = self.frame
            self.frame += 1
            if self.frame < self.frames:
                self.frame_iteration = 0
                self.frame_iterations = self.iterations_of(self.frame)
        return StepResult(iteration=self.iteration, loss=result.loss)

    def frame_tensor(self) -> Tensor:
        """The latest finished frame (1, 3, H, W) in [0, 1] on the device."""
        if self._previous is None:
            raise RuntimeError("no frame is finished yet")
        return self._previous

    def image_tensor(self) -> Tensor:
        """The current image (1, 3, H, W) in [0, 1]: the frame being optimised, or between frames
        the one just finished."""
        if self._generation is not None:
            return self._generation.image_tensor()
        return self.frame_tensor()

    def image(self) -> Image.Image:
        """The current image as a PIL image (previews)."""
        return to_pil(self.image_tensor())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly here (CPU tensors)."""
        return tensors_to_cpu(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """state_dict() with its tensors still on the device (no host sync)."""
        generation = self._generation
        return {
            "version": STATE_VERSION,
            "frame": self.frame,
            "iteration": self.iteration,
            "seed": self.seed,
            "generation": generation.snapshot() if generation is not None else None,
            "previous": self._previous.clone() if self._previous is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict() of an Animation with the same params, images and source.

        At a frame boundary ("generation" None) the next step() sets up that frame from the
        saved previous frame; mid-frame, the frame's Generation is rebuilt and its state loaded.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"animation state version {state.get('version')!r} is not supported")
        frame = int(state["frame"])
        if not 0 <= frame <= self.frames:
            raise ValueError(f"saved frame {frame} is outside this animation's {self.frames}")
        previous = state["previous"]
        self.seed = int(state["seed"])
        self.frame = frame
        self.iteration = int(state["iteration"])
        self._previous = previous.to(self.device) if previous is not None else None
        self.frame_done = None
        self.frame_iterations = self.iterations_of(min(frame, self.frames - 1))
        self.frame_iteration = 0 if frame < self.frames else self.frame_iterations
        self._generation = None
        saved = state["generation"]
        if saved is not None:
            # The start image only shapes z, which the saved state replaces; skip computing it.
            self._generation = self._frame_generation(frame, None)
            self._generation.load_state_dict(saved)
            self.frame_iteration = self._generation.iteration
