"""`artgen animate` and `artgen restyle`: videos made on this machine with the engine's Animation.

Frames are streamed to the MP4 as they are finished (memory stays flat however many frames); a
Ctrl-C stops the run and keeps the frames made so far as a shorter video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from pydantic import ValidationError

from artgen.cli_animate_options import (
    AngleOption,
    ClipOption,
    CutnOption,
    DeviceOption,
    FastOption,
    FramesDirOption,
    IterationsOption,
    ModelOption,
    OutputOption,
    PerFrameOption,
    PromptAtOption,
    SeedOption,
    SizeOption,
    StepSizeOption,
    TranslationXOption,
    TranslationYOption,
    ZoomOption,
)
from artgen.cli_common import (
    build_params,
    build_settings,
    describe_error,
    fail,
    read_image,
    resolve_device,
    user_error_types,
    user_errors,
)
from artgen.cli_progress import AnimationProgress
from artgen.cli_remote import (
    ApiKeyOption,
    ServerOption,
    local_only_options,
    remote_fields,
    video_remote,
)
from artgen.config import Settings
from artgen.engine.animation import Animation, FrameSource
from artgen.engine.animation_params import AnimationParams
from artgen.engine.images import to_pil, to_pixels
from artgen.engine.params import GenerationParams
from artgen.media import write_mp4
from artgen.models.catalog import Catalog
from artgen.models.loading import load_models
from artgen.videos import SequentialFrames, VideoError, probe

# AnimationParams fields whose CLI spelling is not --field-name.
ANIMATION_OPTIONS = {"prompt_schedule": "--prompt-at"}


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


def check_output(output: Path) -> None:
    """The output must be an .mp4 (H.264) in a directory we can create."""
    if output.suffix.lower() != ".mp4":
        fail(f"--output {str(output)!r} must end in .mp4 (an H.264 video)")


def parse_prompt_at(value: str) -> dict[str, Any]:
    """'40:a stormy sea' -> {"frame": 40, "prompt": "a stormy sea"}, or fail naming the option."""
    frame, sep, prompt = value.partition(":")
    if not sep or not frame.strip().isdigit():
        fail(f'--prompt-at {value!r} must look like "40:a stormy sea" (frame:prompts)')
    return {"frame": int(frame), "prompt": prompt.strip()}


def build_animation(values: dict[str, Any]) -> AnimationParams:
    """AnimationParams from the flags given (None: the default); errors name the option."""
    given = {name: value for name, value in values.items() if value is not None}
    try:
        return AnimationParams(**given)
    except ValidationError as error:
        first = error.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        loc = first["loc"]
        # Field errors carry the field in loc; the whole-model checks say it first in the message.
        field = str(loc[0]) if loc else message.partition(":")[0]
        message = message.removeprefix(f"{field}: ")
        if field not in AnimationParams.model_fields:
            fail(message)
        option = ANIMATION_OPTIONS.get(field, "--" + field.replace("_", "-"))
        if field == "prompt_schedule" and len(loc) > 1:
            option = f"--prompt-at (number {int(loc[1]) + 1})"  # loc: prompt_schedule.<index>...
        fail(f"{option}: {message}")


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


def generation_params(
    prompts: str,
    size: tuple[int, int] | None,
    iterations: int | None,
    seed: int | None,
    step_size: float | None,
    cutn: int | None,
) -> GenerationParams:
    """The frame-level GenerationParams from the shared flags."""
    return build_params(
        {},
        {
            "prompts": prompts,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "iterations": iterations,
            "seed": seed,
            "step_size": step_size,
            "cutn": cutn,
        },
    )


def animate(
    prompts: Annotated[
        str, typer.Argument(metavar="PROMPTS", help='Text prompts: "text:weight:stop | other".')
    ],
    output: OutputOption = Path("animation.mp4"),
    frames: Annotated[int | None, typer.Option(help="Frames in the video (default 30).")] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second (default 12).")] = None,
    zoom: ZoomOption = None,
    angle: AngleOption = None,
    translation_x: TranslationXOption = None,
    translation_y: TranslationYOption = None,
    prompt_at: PromptAtOption = None,
    iterations: IterationsOption = None,
    iterations_per_frame: PerFrameOption = None,
    size: SizeOption = None,
    seed: SeedOption = None,
    init_image: Annotated[Path | None, typer.Option(help="Frame 0 starts from this image.")] = None,
    model: ModelOption = None,
    clip_model: ClipOption = None,
    step_size: StepSizeOption = None,
    cutn: CutnOption = None,
    fast: FastOption = None,
    device: DeviceOption = None,
    frames_dir: FramesDirOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Make a zoom/pan/rotate video: frame 0 is a picture, each next frame the previous one moved
    by the keyframed motion and repainted toward the prompts."""
    check_output(output)
    params = generation_params(prompts, size, iterations, seed, step_size, cutn)
    if not params.prompts.strip():
        fail("give a text prompt (PROMPTS)")
    motion_values = {
        "frames": frames,
        "fps": fps,
        "iterations_per_frame": iterations_per_frame,
        "zoom": zoom,
        "angle": angle,
        "translation_x": translation_x,
        "translation_y": translation_y,
        "prompt_schedule": [parse_prompt_at(item) for item in prompt_at or []] or None,
    }
    motion = build_animation(motion_values)
    if server is not None:
        local_only = local_only_options(device, fast, frames_dir)
        fields = remote_fields("animation", params, motion_values, model, clip_model)
        video_remote(
            server, api_key, fields, local_only=local_only, output=output, init_image=init_image
        )
        return
    setup = prepare(model, clip_model, device)
    animation = new_animation(setup, params, motion, fast, init_image=init_image)
    render(animation, "animating", output, motion.fps, frames_dir)


def restyle(
    source: Annotated[Path, typer.Argument(metavar="VIDEO", help="MP4, WebM or animated GIF.")],
    prompts: Annotated[
        str, typer.Argument(metavar="PROMPTS", help='Text prompts: "text:weight:stop | other".')
    ],
    output: OutputOption = Path("restyled.mp4"),
    coherence: Annotated[
        float | None,
        typer.Option(
            help="0..1: how much of the previous restyled frame each frame starts from "
            "(more: less flicker; default 0.5)."
        ),
    ] = None,
    frames: Annotated[
        int | None, typer.Option(help="Restyle only the first N frames (default: all).")
    ] = None,
    prompt_at: PromptAtOption = None,
    iterations: IterationsOption = None,
    iterations_per_frame: PerFrameOption = None,
    size: Annotated[
        tuple[int, int] | None,
        typer.Option(metavar="W H", help="Width and height in pixels (default the video's)."),
    ] = None,
    seed: SeedOption = None,
    model: ModelOption = None,
    clip_model: ClipOption = None,
    step_size: StepSizeOption = None,
    cutn: CutnOption = None,
    fast: FastOption = None,
    device: DeviceOption = None,
    frames_dir: FramesDirOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Repaint every frame of a video toward the prompts; the output keeps the source's fps and
    its audio track."""
    check_output(output)
    if not source.is_file():
        fail(f"VIDEO {str(source)!r} does not exist")
    if server is not None:
        local_only = local_only_options(device, fast, frames_dir)
        local_only["--frames"] = frames is not None  # the server restyles every frame
        if size is None:  # the video's size, as a local run takes it
            try:
                info = probe(source, build_settings().video_limits())
            except VideoError as error:
                fail(f"VIDEO {str(source)!r}: {describe_error(error)}")
            size = (info.width, info.height)
        params = generation_params(prompts, size, iterations, seed, step_size, cutn)
        style_values = {
            "iterations_per_frame": iterations_per_frame,
            "coherence": coherence,
            "prompt_schedule": [parse_prompt_at(item) for item in prompt_at or []] or None,
        }
        fields = remote_fields("restyle", params, style_values, model, clip_model)
        video_remote(
            server, api_key, fields, local_only=local_only, output=output, source_video=source
        )
        return
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
