"""`artgen generate`: one image from text (and image) prompts, here or on a server (--server).

The flags (and `--params-from` an artgen PNG) become GenerationParams; the engine runs with a
progress bar (local_generate.py, which imports torch); the PNG carries artgen.media's metadata,
so `--params-from` reruns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from PIL import Image, UnidentifiedImageError

from artgen.cli_common import (
    build_params,
    describe_error,
    fail,
    parse_image_prompt,
    read_image,
)
from artgen.cli_remote import ApiKeyOption, ServerOption, generate_remote
from artgen.media import VIDEO_SUFFIXES, NoParameters, read_parameters


def parse_schedule_item(value: str) -> dict[str, Any]:
    """'50=a dragon:1' -> {"at": 50, "prompts": "a dragon:1"}."""
    at, sep, prompts = value.partition("=")
    if not sep or not at.strip().isdigit():
        fail(f'--schedule {value!r} must look like "50=new prompts" (iteration=prompts)')
    return {"at": int(at), "prompts": prompts}


def read_recorded_parameters(path: Path) -> dict[str, Any]:
    """The parameters an artgen PNG carries (artgen.media's schema, CLI and service alike)."""
    if not path.is_file():
        fail(f"--params-from {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            recorded = read_parameters(image)
    except NoParameters as error:
        fail(f"--params-from {str(path)!r} {error}")
    except (UnidentifiedImageError, OSError) as error:
        fail(f"--params-from {str(path)!r} is not a readable image ({describe_error(error)})")
    return recorded


def generate(
    prompts: Annotated[
        str | None,
        typer.Argument(
            metavar="PROMPTS",
            help='Text prompts: "text:weight:stop | other:-0.5" ("" with image prompts).',
            show_default=False,
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path(
        "output.png"
    ),
    size: Annotated[
        tuple[int, int] | None,
        typer.Option(metavar="W H", help="Width and height in pixels (default 256 256)."),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Optimisation steps (default 100).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; random when left out.")] = None,
    init_image: Annotated[Path | None, typer.Option(help="Start from this image.")] = None,
    init_weight: Annotated[
        float | None, typer.Option(help="Pull toward the init image's latent (default 0).")
    ] = None,
    image_prompt: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FILE[:WEIGHT[:STOP]]",
            help="Image prompt file, optionally with :weight and :stop (repeatable).",
        ),
    ] = None,
    noise_prompts: Annotated[
        str | None, typer.Option(help='Noise prompts: "seed:weight | seed:weight".')
    ] = None,
    schedule: Annotated[
        list[str] | None,
        typer.Option(
            metavar="AT=PROMPTS",
            help='Story mode: "AT=PROMPTS" switches prompts at iteration AT (repeatable).',
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="VQGAN model name (see `models list`).")] = None,
    clip_model: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="CLIP model name (repeatable; losses are summed)."),
    ] = None,
    step_size: Annotated[float | None, typer.Option(help="Learning rate (default 0.1).")] = None,
    cutn: Annotated[int | None, typer.Option(help="Cutouts per iteration (default 64).")] = None,
    cut_pow: Annotated[float | None, typer.Option(help="Cutout size power (default 1.0).")] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="adam, adamw, adagrad or sgd (default adam).")
    ] = None,
    augment: Annotated[
        bool | None, typer.Option("--augment/--no-augment", help="Augment cutouts (default on).")
    ] = None,
    fast: Annotated[
        bool | None,
        typer.Option(
            "--fast/--reference", help="Engine path (default fast on CUDA, reference on CPU)."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")
    ] = None,
    use_compile: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile decoder and CLIP: slower start, faster steps."
        ),
    ] = False,
    save_every: Annotated[
        int | None, typer.Option(min=1, help="Write a snapshot NAME-0010.png every N iterations.")
    ] = None,
    video: Annotated[Path | None, typer.Option(help="Write a timelapse MP4 here.")] = None,
    video_every: Annotated[
        int, typer.Option(min=1, help="Timelapse frame every N iterations.")
    ] = 1,
    fps: Annotated[int, typer.Option(min=1, help="Timelapse frames per second.")] = 30,
    params_from: Annotated[
        Path | None,
        typer.Option(
            help="Reuse the prompts, seed, models and parameters stored in an artgen PNG; "
            "flags given here override them."
        ),
    ] = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Generate one image from text (and image) prompts (on an artgen server with --server)."""
    if output.suffix.lower() != ".png":
        fail(f"--output {str(output)!r} must end in .png (the parameters are stored as PNG text)")
    if video is not None and video.suffix.lower() not in VIDEO_SUFFIXES:
        fail(f"--video {str(video)!r} must end in {', '.join(VIDEO_SUFFIXES)} (H.264 video)")
    recorded = read_recorded_parameters(params_from) if params_from is not None else {}
    if prompts is None:
        if "prompts" not in recorded:
            fail("give PROMPTS (or --params-from an artgen PNG)")
        prompts = str(recorded["prompts"])
    if init_image is None and recorded.get("init_image"):
        init_image = Path(recorded["init_image"])
    if image_prompt is None and recorded.get("image_prompts"):
        paths = list(recorded["image_prompts"])
        weights = recorded.get("image_prompt_weights") or [1.0] * len(paths)
        stops = recorded.get("image_prompt_stops") or [None] * len(paths)
        if not len(weights) == len(stops) == len(paths):
            fail(f"--params-from {str(params_from)!r}: image prompts and weights do not match")
        image_prompt = [
            f"{path}:{weight}" + ("" if stop is None else f":{stop}")
            for path, weight, stop in zip(paths, weights, stops, strict=True)
        ]
    unnamed = recorded.get("image_prompt_weights") or recorded.get("image_prompt_stops")
    if image_prompt is None and unnamed:
        # A service PNG: its image prompts were uploads, not files named in the metadata.
        fail(
            f"--params-from {str(params_from)!r} was made with {len(unnamed)} image prompt(s) "
            "that it does not name: give them with --image-prompt FILE:WEIGHT:STOP"
        )

    image_prompts = [parse_image_prompt(value) for value in image_prompt or []]
    # Given image prompts replace recorded stops too: [] when none of them has a stop.
    image_stops = [stop for *_, stop in image_prompts]
    if all(stop is None for stop in image_stops):
        image_stops = []
    params = build_params(
        recorded,
        {
            "prompts": prompts,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "iterations": iterations,
            "seed": seed,
            "step_size": step_size,
            "cutn": cutn,
            "cut_pow": cut_pow,
            "init_weight": init_weight,
            "optimizer": optimizer,
            "augment": augment,
            "noise_prompts": noise_prompts,
            "schedule": [parse_schedule_item(item) for item in schedule or []] or None,
            "image_prompt_weights": [weight for _, weight, _ in image_prompts] or None,
            "image_prompt_stops": image_stops if image_prompts else None,
        },
    )
    if not params.prompts.strip() and not image_prompts:
        fail("give a text prompt or at least one --image-prompt")
    init = read_image(init_image, "--init-image") if init_image is not None else None
    prompt_images = [read_image(path, "--image-prompt") for path, *_ in image_prompts]
    if server is not None:
        local_only = {
            "--device": device is not None,
            "--compile": use_compile,
            "--fast/--reference": fast is not None,
            "--save-every": save_every is not None,
            "--video-every": video_every != 1,
            "--fps": fps != 30,
        }
        # Only what was given or recorded: the server fills in its own defaults and models.
        remote_fields = params.model_dump(mode="json", exclude_unset=True)
        remote_models = {
            "model": model or recorded.get("model"),
            "clip_models": clip_model or recorded.get("clip_models"),
        }
        remote_fields.update((key, value) for key, value in remote_models.items() if value)
        generate_remote(
            server,
            api_key,
            remote_fields,
            local_only=local_only,
            init_image=init_image,
            image_prompts=[path for path, *_ in image_prompts],
            output=output,
            video=video,
        )
        return
    # torch loads only when a command runs locally: `artgen --help` and remote commands stay fast
    from artgen import local_generate

    local_generate.run(
        params,
        recorded,
        model=model,
        clip_model=clip_model,
        device=device,
        fast=fast,
        use_compile=use_compile,
        init_image=init_image,
        init=init,
        image_prompts=image_prompts,
        prompt_images=prompt_images,
        output=output,
        save_every=save_every,
        video=video,
        video_every=video_every,
        fps=fps,
    )
