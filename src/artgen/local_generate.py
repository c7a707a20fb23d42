"""The local half of `artgen generate` (cli_generate.py): load the models, run the engine with a
progress bar, write the PNG (with artgen.media's metadata), snapshots and a timelapse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from PIL import Image

from artgen.cli_common import build_settings, user_errors
from artgen.cli_progress import GenerateProgress
from artgen.engine import stepping
from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.local_common import resolve_device
from artgen.media import Mp4Writer, png_text, write_png
from artgen.models.catalog import Catalog
from artgen.models.loading import load_models


def snapshot_path(output: Path, iteration: int) -> Path:
    """castle.png, 10 -> castle-0010.png beside it."""
    return output.with_name(f"{output.stem}-{iteration:04d}{output.suffix}")


def output_metadata(
    params: GenerationParams, generation: Generation, extra: dict[str, Any]
) -> dict[str, str]:
    """PNG text chunks (artgen.media): prompt, the seed actually used, every parameter as JSON."""
    recorded = params.model_dump(mode="json")
    recorded.update(width=generation.width, height=generation.height)
    recorded.update(extra)
    return png_text(recorded, generation.seed)


def run(
    params: GenerationParams,
    recorded: dict[str, Any],
    *,
    model: str | None,
    clip_model: list[str] | None,
    device: str | None,
    fast: bool | None,
    use_compile: bool,
    init_image: Path | None,
    init: Image.Image | None,
    image_prompts: list[tuple[Path, float, float | None]],
    prompt_images: list[Image.Image],
    output: Path,
    save_every: int | None,
    video: Path | None,
    video_every: int,
    fps: int,
) -> None:
    """Generate `params` here: flags win over `recorded` (a --params-from PNG's) models; Ctrl-C
    exits 130 without writing the image."""
    settings = build_settings(model=model or recorded.get("model"), device=device)
    clip_models = list(clip_model or recorded.get("clip_models") or settings.resolved_clip_models)
    torch_device = resolve_device(settings.device)

    with user_errors():
        models = load_models(settings.model, clip_models, torch_device, Catalog(settings.home))
        generation = Generation(
            models,
            params,
            device=torch_device,
            init_image=init,
            image_prompts=prompt_images,
            options=EngineOptions(fast=fast, compile=use_compile),
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        writer = None
        if video is not None:
            video.parent.mkdir(parents=True, exist_ok=True)
            writer = Mp4Writer(video, fps)

    try:
        if writer is not None:
            writer.append(generation.image())
        with GenerateProgress(params.iterations) as progress:

            def on_step(info: stepping.StepInfo) -> None:
                progress.update(info.iteration, info.loss)
                snapshot = save_every is not None and info.iteration % save_every == 0
                frame = writer is not None and (
                    info.iteration % video_every == 0 or info.iteration == info.iterations
                )
                if not (snapshot or frame):
                    return
                image = info.image()
                if writer is not None and frame:
                    writer.append(image)
                if snapshot:
                    image.save(snapshot_path(output, info.iteration), format="PNG")

            final = stepping.run(generation, on_step)
    except KeyboardInterrupt:
        typer.echo("interrupted: no image written", err=True)
        raise typer.Exit(130) from None
    finally:
        if writer is not None:
            writer.close()

    extra = {
        "model": settings.model,
        "clip_models": clip_models,
        "init_image": str(init_image) if init_image is not None else None,
        "image_prompts": [str(path) for path, *_ in image_prompts],
        "loss": progress.loss,
    }
    write_png(final, output, output_metadata(params, generation, extra))
    typer.echo(f"wrote {output} (seed {generation.seed})")
    if video is not None:
        typer.echo(f"wrote {video} ({writer.frames if writer else 0} frames)")
