"""`artgen animate` and `artgen restyle`: videos made with the engine's Animation, on this machine
(local_animate.py, which imports torch) or on a server (--server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from artgen.cli_common import build_params, build_settings, describe_error, fail
from artgen.cli_remote import (
    ApiKeyOption,
    ServerOption,
    local_only_options,
    remote_fields,
    video_remote,
)
from artgen.engine.animation_params import AnimationParams
from artgen.engine.params import GenerationParams
from artgen.videos import VideoError, probe

# AnimationParams fields whose CLI spelling is not --field-name.
ANIMATION_OPTIONS = {"prompt_schedule": "--prompt-at"}


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
    # torch loads only when a command runs locally: `artgen --help` and remote commands stay fast
    from artgen import local_animate

    local_animate.animate(
        params, motion, model=model, clip_model=clip_model, device=device, fast=fast,
        init_image=init_image, output=output, frames_dir=frames_dir,
    )  # fmt: skip


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
    from artgen import local_animate  # torch loads only here (see animate)

    local_animate.restyle(
        source, prompts, output=output, coherence=coherence, frames=frames, prompt_at=prompt_at,
        iterations=iterations, iterations_per_frame=iterations_per_frame, size=size, seed=seed,
        model=model, clip_model=clip_model, step_size=step_size, cutn=cutn, fast=fast,
        device=device, frames_dir=frames_dir,
    )  # fmt: skip
