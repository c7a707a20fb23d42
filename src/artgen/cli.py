"""The `artgen` command line: generate, animate, restyle, models, serve, worker, bench.

Argument parsing lives only here (and in the cli_* command modules); everything below the CLI
takes typed values. The helpers the commands share are in artgen.cli_common.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from artgen.cli_animate import animate, restyle
from artgen.cli_common import (
    VIDEO_SUFFIXES,
    GenerateProgress,
    VideoWriter,
    build_params,
    build_settings,
    catalog_from_env,
    describe_error,
    fail,
    format_size,
    parse_image_prompt,
    read_image,
    resolve_device,
    user_errors,
)
from artgen.cli_remote import ApiKeyOption, ServerOption, generate_remote, jobs_app

if TYPE_CHECKING:
    from artgen.engine.params import GenerationParams

# Plain click help: typer's rich panels label every flag (--help included) "<bool>".
app = typer.Typer(
    help="CLIP-guided VQGAN art generator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
models_app = typer.Typer(
    help="List, download and register models.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(models_app, name="models")
app.command()(animate)
app.command()(restyle)
app.add_typer(jobs_app, name="jobs")


def parse_schedule_item(value: str) -> dict[str, Any]:
    """'50=a dragon:1' -> {"at": 50, "prompts": "a dragon:1"}."""
    at, sep, prompts = value.partition("=")
    if not sep or not at.strip().isdigit():
        fail(f'--schedule {value!r} must look like "50=new prompts" (iteration=prompts)')
    return {"at": int(at), "prompts": prompts}


def snapshot_path(output: Path, iteration: int) -> Path:
    """castle.png, 10 -> castle-0010.png beside it."""
    return output.with_name(f"{output.stem}-{iteration:04d}{output.suffix}")


def read_recorded_parameters(path: Path) -> dict[str, Any]:
    """The parameters an artgen PNG carries (artgen.media's schema, CLI and service alike)."""
    from PIL import Image, UnidentifiedImageError

    from artgen.media import NoParameters, read_parameters

    if not path.is_file():
        fail(f"--params-from {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            recorded = read_parameters(image)
    except NoParameters as error:
        fail(f"--params-from {str(path)!r} {error}")
    except (UnidentifiedImageError, OSError) as error:
        fail(f"--params-from {str(path)!r} is not a readable image ({describe_error(error)})")
    # The service's request calls the text prompts "prompt" (or "prompts"); the engine "prompts".
    if "prompts" not in recorded and "prompt" in recorded:
        prompt = recorded.pop("prompt")
        recorded["prompts"] = prompt if isinstance(prompt, str) else " | ".join(map(str, prompt))
    return recorded


def output_metadata(
    params: GenerationParams, generation: Any, extra: dict[str, Any]
) -> dict[str, str]:
    """PNG text chunks (artgen.media): prompt, the seed actually used, every parameter as JSON."""
    from artgen.media import png_text

    recorded = params.model_dump(mode="json")
    recorded.update(width=generation.width, height=generation.height)
    recorded.update(extra)
    return png_text(recorded, generation.seed)


@app.command()
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
    settings = build_settings(model=model or recorded.get("model"), device=device)
    clip_models = list(clip_model or recorded.get("clip_models") or settings.resolved_clip_models)
    torch_device = resolve_device(settings.device)

    from artgen.engine.generate import Generation
    from artgen.engine.options import EngineOptions
    from artgen.engine.stepping import run
    from artgen.models.catalog import Catalog
    from artgen.models.loading import load_models

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
            writer = VideoWriter(video, fps)

    try:
        if writer is not None:
            writer.append(generation.image())
        with GenerateProgress(params.iterations) as progress:

            def on_step(info: Any) -> None:
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

            final = run(generation, on_step)
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
    from artgen.media import write_png

    write_png(final, output, output_metadata(params, generation, extra))
    typer.echo(f"wrote {output} (seed {generation.seed})")
    if video is not None:
        typer.echo(f"wrote {video} ({writer.frames if writer else 0} frames)")


# `serve` (its embedded worker) and `worker` take the same batching option.
BatchJobsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Same-size jobs stepped together in one batch (default 8 on CUDA, 1 on a CPU).",
    ),
]


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Job records, images and the embedded queue (default ./artgen-data, "
            "or ARTGEN_DATA_DIR)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Default VQGAN model.")] = None,
    clip_model: Annotated[
        list[str] | None, typer.Option(metavar="NAME", help="Default CLIP model (repeatable).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Embedded worker's device (default auto).")
    ] = None,
    queue: Annotated[
        str | None, typer.Option(help="Queue URL: sqlite:///path (default) or redis://host/db.")
    ] = None,
    worker: Annotated[
        bool | None,
        typer.Option("--worker/--no-worker", help="Run a worker inside this process (default on)."),
    ] = None,
    worker_process: Annotated[
        bool | None,
        typer.Option(
            "--worker-process/--worker-thread",
            help="Run the embedded worker as a child process, so API load does not slow jobs "
            "(default: a thread).",
        ),
    ] = None,
    batch_jobs: BatchJobsOption = None,
) -> None:
    """Run the HTTP API (and, by default, an embedded worker)."""
    settings = build_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        model=model,
        clip_model=",".join(clip_model) if clip_model else None,
        device=device,
        queue_url=queue,
        worker=worker,
        worker_process=worker_process,
        batch_jobs=batch_jobs,
    )
    from artgen.api.server import serve as serve_api

    serve_api(settings)


@app.command()
def worker(
    queue: Annotated[
        str | None, typer.Option(help="Queue URL shared with `artgen serve` (redis://host/db).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="VQGAN model to keep loaded.")] = None,
    clip_model: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="CLIP model to keep loaded (repeatable)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data dir of the default sqlite queue (default ./artgen-data)."),
    ] = None,
    batch_jobs: BatchJobsOption = None,
) -> None:
    """Run a worker that takes jobs from the queue."""
    settings = build_settings(
        queue_url=queue,
        device=device,
        model=model,
        clip_model=",".join(clip_model) if clip_model else None,
        data_dir=data_dir,
        batch_jobs=batch_jobs,
    )
    if device is not None:
        resolve_device(device)
    import logging

    # A worker is a long-running process: its log is how an operator sees jobs come and go.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from artgen.jobs.hosting import run_worker

    raise typer.Exit(run_worker(settings))


def parse_int_list(value: str, option: str) -> tuple[int, ...]:
    """'64,128' -> (64, 128), or fail naming the option."""
    try:
        numbers = tuple(int(item) for item in value.split(",") if item.strip())
    except ValueError:
        fail(f"{option} {value!r} must be comma-separated integers, e.g. 64,128")
    if not numbers or min(numbers) < 1:
        fail(f"{option} {value!r} must list positive integers")
    return numbers


@app.command()
def bench(
    model: Annotated[
        str, typer.Option(help="real (f16 16384 VQGAN + ViT-B-32, random weights) or tiny.")
    ] = "real",
    sizes: Annotated[
        str | None, typer.Option(help="Square sizes, comma-separated (default 64).")
    ] = None,
    cutn: Annotated[
        int | None, typer.Option(min=1, help="Cutouts per iteration (default 8).")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="Timed iterations per case (default 10).")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(min=0, help="Untimed iterations first (default 2).")
    ] = None,
    paths: Annotated[str, typer.Option(help="Engine paths, comma-separated.")] = "reference,fast",
    batch_jobs: Annotated[
        int, typer.Option(min=0, help="Also step N jobs together (engine batch mode); 0: off.")
    ] = 0,
    batch_size: Annotated[int, typer.Option(min=16, help="Size of the batched jobs.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quick: Annotated[
        bool, typer.Option(help="Small defaults for a smoke run: 64px, cutn 4, 3 iterations.")
    ] = False,
    output_dir: Annotated[Path, typer.Option(help="Where the JSON result goes.")] = Path(
        "benchmarks/results"
    ),
    tag: Annotated[str | None, typer.Option(help="Suffix for the JSON file name.")] = None,
) -> None:
    """Measure ms/iteration, iterations/s and peak memory: reference vs fast path."""
    from rich.console import Console

    from artgen.bench import PATHS, BenchConfig, render_table, run_benchmark, write_result

    if model not in ("real", "tiny"):
        fail(f"--model {model!r}: choose real or tiny")
    chosen_paths = tuple(item.strip() for item in paths.split(",") if item.strip())
    for path in chosen_paths:
        if path not in PATHS:
            fail(f"--paths: unknown path {path!r}; choose from {', '.join(PATHS)}")
    # --quick changes only the defaults; explicit flags still win.
    config = BenchConfig(
        device=resolve_device(device),
        model=model,
        sizes=parse_int_list(sizes or "64", "--sizes"),
        cutn=cutn or (4 if quick else 8),
        iterations=iterations or (3 if quick else 10),
        warmup=warmup if warmup is not None else (1 if quick else 2),
        paths=chosen_paths,
        batch_jobs=batch_jobs,
        batch_size=batch_size,
    )
    console = Console()

    def report(case: Any) -> None:
        timing = f"error: {case.error}" if case.error else f"{case.ms_per_iteration:.1f} ms/it"
        console.print(f"{case.path:>9} {case.size:>5}px x{case.jobs}: {timing}")

    result = run_benchmark(config, report)
    console.print(render_table(result))
    written = write_result(result, output_dir, tag)
    console.print(f"wrote {written}")


# `artgen models list` fits a 100-column terminal.
MODELS_LIST_WIDTH = 100


@models_app.command("list")
def models_list() -> None:
    """Show every model: name, kind, whether its weights are here, default, size."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    catalog = catalog_from_env()
    with user_errors():
        rows = catalog.list_models()
    # Fits 100 columns: short headers, descriptions wrap, the cache path goes below.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("name", "kind", "here", "default", "size"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    table.add_column("description", overflow="fold")
    for row in rows:
        table.add_row(
            row.name,
            row.kind,
            "yes" if row.available else "no",
            "yes" if row.default else "",
            format_size(row.size_bytes),
            row.description,
        )
    console = Console(width=MODELS_LIST_WIDTH)
    console.print(table)
    console.print(f"weights cache: {catalog.home} (ARTGEN_HOME)", soft_wrap=True)


@models_app.command("download")
def models_download(
    name: Annotated[str, typer.Argument(help="Model name from `artgen models list`.")],
) -> None:
    """Download a model's weights into the cache (resumes a partial download)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    catalog = catalog_from_env()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(file_name: str, done: int, total: int | None) -> None:
            if file_name not in tasks:
                tasks[file_name] = progress.add_task(file_name, total=total)
            progress.update(tasks[file_name], completed=done, total=total)

        with user_errors():
            paths = catalog.download(name, progress=on_progress)
    if not paths:
        typer.echo(f"{name} needs no download")
    for path in paths:
        typer.echo(f"ready: {path}")


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="Name to register the model under.")],
    config: Annotated[Path, typer.Option(help="taming YAML config file.")],
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint (.ckpt) with a state_dict.")],
) -> None:
    """Register a local VQGAN (config + checkpoint) under NAME after checking that it loads."""
    for option, path in (("--config", config), ("--checkpoint", checkpoint)):
        if not path.is_file():
            fail(f"{option} {str(path)!r} does not exist")
    catalog = catalog_from_env()
    with user_errors():
        info = catalog.add(name, config, checkpoint)
    typer.echo(f"added {info.name}: use --model {info.name}")
