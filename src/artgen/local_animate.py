"""The local halves of `artgen animate` and `artgen restyle` (cli_animate.py): load the models
and make the video on this machine with the engine's Animation.

Frames are streamed to the MP4 as they are finished (memory stays flat however many frames); a
Ctrl-C stops the run and keeps the frames made so far as a shorter video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import typer

from artgen.cli_animate import build_animation, generation_params, parse_prompt_at
from artgen.cli_common import (
    build_settings,
    describe_error,
    fail,
    read_image,
    user_error_types,
    user_errors,
)
from artgen.cli_progress import AnimationProgress
from artgen.config import Settings
from artgen.engine.animation import Animation, FrameSource
from artgen.engine.animation_params import AnimationParams
from artgen.engine.images import to_pil, to_pixels
from artgen.engine.params import GenerationParams
from artgen.local_common import resolve_device
from artgen.media import write_mp4
from artgen.models.catalog import Catalog
from artgen.models.loading import load_models
from artgen.videos import SequentialFrames, VideoError, probe


@dataclass(frozen=True)
class LocalSetup:
    """What both commands resolved before any frame is made."""

    settings: Settings
    clip_models: list[str]
    device: torch.device


def prepare(model: str | None, clip_model: list[str] | None, device: str | None) -> LocalSetup:
    """Settings, CLIP model names and the device, as `artgen generate` resolves them."""
    settings = build_settings(model=model, device=device)
    clip_models = list(clip_model or settings.resolved_clip_models)
    return LocalSetup(settings, clip_models, resolve_device(settings.device))


class FrameStream:
    """Runs an Animation and yields each finished frame as (H, W, 3) uint8; a Ctrl-C ends the
    stream early (so the video written so far is kept) and sets `interrupted`."""

    def __init__(
        self, animation: Animation, progress: AnimationProgress, frames_dir: Path | None
    ) -> None:
        self.animation = animation
        self.progress = progress
        self.frames_dir = frames_dir
        self.interrupted = False

    def __iter__(self) -> Iterator[np.ndarray]:
        animation = self.animation
        try:
            while animation.iteration < animation.iterations:
                result = animation.step()
                self.progress.update(animation, partial(float, result.loss))
                if animation.frame_done is None:
                    continue
                frame = animation.frame_tensor()
                if self.frames_dir is not None:
                    name = f"frame-{animation.frame_done:05d}.png"
                    to_pil(frame).save(self.frames_dir / name, format="PNG")
                yield to_pixels(frame).cpu().numpy()
        except KeyboardInterrupt:
            self.interrupted = True


def render(
    animation: Animation,
    label: str,
    output: Path,
    fps: float,
    frames_dir: Path | None,
    audio_from: Path | None = None,
) -> None:
    """Make every frame, stream them to `output` and say what was written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
    with AnimationProgress(label, animation.iterations, animation.frames) as progress:
        stream = FrameStream(animation, progress, frames_dir)
        try:
            written = write_mp4(stream, output, fps, audio_from=audio_from)
        except VideoError:
            raise  # the source video's: the caller names the file
        except user_error_types() as error:
            fail(describe_error(error))
    summary = f"{output} ({written} frames at {fps:g} fps, seed {animation.seed})"
    if stream.interrupted:
        typer.echo(f"interrupted: wrote {summary}; {animation.frames} were asked for", err=True)
        raise typer.Exit(130)
    typer.echo(f"wrote {summary}")


def new_animation(
    setup: LocalSetup,
    params: GenerationParams,
    animation: AnimationParams,
    fast: bool | None,
    init_image: Path | None = None,
    source: FrameSource | None = None,
) -> Animation:
    """Load the models and set up the Animation, turning user errors into clean messages."""
    init = read_image(init_image, "--init-image") if init_image is not None else None
    with user_errors():
        models = load_models(
            setup.settings.model, setup.clip_models, setup.device, Catalog(setup.settings.home)
        )
        return Animation(
            models, params, animation, device=setup.device, init_image=init, source=source,
            fast=fast,
        )  # fmt: skip


def animate(
    params: GenerationParams,
    motion: AnimationParams,
    *,
    model: str | None,
    clip_model: list[str] | None,
    device: str | None,
    fast: bool | None,
    init_image: Path | None,
    output: Path,
    frames_dir: Path | None,
) -> None:
    """Make the `motion` video of `params` here and write it to `output`."""
    setup = prepare(model, clip_model, device)
    animation = new_animation(setup, params, motion, fast, init_image=init_image)
    render(animation, "animating", output, motion.fps, frames_dir)


def restyle(
    source: Path,
    prompts: str,
    *,
    output: Path,
    coherence: float | None,
    frames: int | None,
    prompt_at: list[str] | None,
    iterations: int | None,
    iterations_per_frame: int | None,
    size: tuple[int, int] | None,
    seed: int | None,
    model: str | None,
    clip_model: list[str] | None,
    step_size: float | None,
    cutn: int | None,
    fast: bool | None,
    device: str | None,
    frames_dir: Path | None,
) -> None:
    """Repaint the frames of `source` here (its size, frame count and fps unless given) and write
    the video, with the source's audio, to `output`."""
    setup = prepare(model, clip_model, device)
    limits = setup.settings.video_limits()  # the service's upload limits (ARTGEN_VIDEO_*)
    try:
        info = probe(source, limits)
    except VideoError as error:
        fail(f"VIDEO {str(source)!r}: {describe_error(error)}")
    if frames is not None and frames < 1:
        fail(f"--frames {frames}: must be at least 1")
    params = generation_params(
        prompts, size or (info.width, info.height), iterations, seed, step_size, cutn
    )
    if not params.prompts.strip():
        fail("give a text prompt (PROMPTS)")
    style = build_animation(
        {
            "frames": min(frames or info.frames, info.frames),
            "fps": max(1, min(60, round(info.fps))),
            "iterations_per_frame": iterations_per_frame,
            "coherence": coherence,
            "prompt_schedule": [parse_prompt_at(item) for item in prompt_at or []] or None,
        }
    )
    try:  # a decoding problem met while restyling is named like one found by probe
        with SequentialFrames(source, limits) as source_frames:
            animation = new_animation(setup, params, style, fast, source=source_frames)
            render(animation, "restyling", output, info.fps, frames_dir, audio_from=source)
    except VideoError as error:
        fail(f"VIDEO {str(source)!r}: {describe_error(error)}")
