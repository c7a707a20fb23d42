"""Does a picture show what its prompt asks? Shape prompts through the real engine, judged.

Prompts name a shape, its colour and the background ("a red circle on a blue background"),
including every combination the demo models never saw in training (`shapes.HELD_OUT`). Each
prompt x seed x size is generated through `artgen.engine` with the models under test (the demo
models by default), then the same way with the baseline (the tiny random-weight models), and
judged by `artgen.training.judge`, which is independent of the CLIP that guided the picture: the
background and shape colours are measured procedurally, the shape by a separately trained CNN.
With `--judge-clip NAME` a second CLIP (not the guiding one) also gives a CLIP score: the cosine
between its embeddings of the picture and the prompt, x 100, so real weights can be compared.

    python3 benchmarks/bench_quality.py                     # 48 prompts x 3 seeds x 64 and 128 px
    python3 benchmarks/bench_quality.py --prompts 8 --seeds 1 --sizes 64 --iterations 20  # trial
    python3 benchmarks/bench_quality.py --grid docs/demo-grid.png    # and the grid of results
    python3 benchmarks/bench_quality.py --iterations 300 --judge-at 100,200  # judged along the way
    python3 benchmarks/bench_quality.py --vqgan wikiart_16384 --clip ViT-B-32/openai \
        --judge-clip ViT-B-16/openai --baseline none --device cuda   # real weights, when present

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from artgen.training import shapes
from artgen.training.judge import ShapeJudge, read_colours

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = 48
# Chance for a judge that guesses uniformly.
CHANCE = {
    "colour": 1 / len(shapes.COLOURS),
    "background": 1 / len(shapes.COLOURS),
    "shape": 1 / len(shapes.SHAPES),
    "all": 1 / len(shapes.all_combos()),
}
TARGETS = {"colour": 0.90, "background": 0.90, "shape": 0.75}
GRID_TILE = 192  # smallest tile side in the grid, so the prompt under it fits
SECONDS_TARGET = 20.0  # 100 iterations at 64x64 on this project's CPU


@dataclass(frozen=True)
class Case:
    """One prompt: the scene it asks for (size and position are not asked, so not judged)."""

    shape: str
    colour: str
    background: str
    held_out: bool

    @property
    def prompt(self) -> str:
        return shapes.prompt_for(
            shapes.Scene(self.shape, self.colour, self.background, "large", "center")
        )


@dataclass
class Picture:
    """One generated picture and what the judge read in it."""

    models: str  # "demo", "tiny", "wikiart_16384 + ViT-B-32/openai"
    baseline: bool  # run for comparison, not under test
    kind: str  # "generated"; "reconstructed": a drawing through the VQGAN alone (no CLIP)
    prompt: str
    shape: str
    colour: str
    background: str
    held_out: bool
    seed: int
    size: int
    iterations: int  # how far the search had gone when the picture was taken (0: reconstructed)
    seconds: float  # wall time of its generation so far (a batch's time shared by its members)
    loss: float
    read_colour: str | None = None
    read_background: str = ""
    read_shape: str = ""
    shape_fraction: float = 0.0
    clip_score: float | None = None
    correct: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        case: Case,
        models: str,
        baseline: bool,
        kind: str,
        seed: int,
        size: int,
        iterations: int,
        seconds: float,
        loss: float,
    ) -> Picture:
        """The picture of `case` made with `models` (not judged yet)."""
        return cls(
            models, baseline, kind, case.prompt, case.shape, case.colour, case.background,
            case.held_out, seed, size, iterations, seconds, loss,
        )  # fmt: skip


def cases(count: int) -> list[Case]:
    """`count` prompts, balanced: every shape equally, and held-out ones spread through the list.

    The full 48 are the 12 held-out combinations and 9 seen ones per shape (chosen from a fixed
    seed); any prefix stays balanced, so a trial with fewer prompts is still fair.
    """
    import random

    rng = random.Random(0)
    per_shape: dict[str, list[Case]] = {}
    for shape in shapes.SHAPES:
        held = [Case(*combo, True) for combo in sorted(shapes.HELD_OUT) if combo[0] == shape]
        seen = [
            Case(*combo, False)
            for combo in rng.sample(
                [c for c in shapes.TRAIN_COMBOS if c[0] == shape], 3 * len(held)
            )
        ]
        # H S S S H S S S ...: each held-out case followed by three seen ones.
        per_shape[shape] = [
            case for index, h in enumerate(held) for case in (h, *seen[3 * index : 3 * index + 3])
        ]
    ordered = [
        per_shape[shape][i] for i in range(len(per_shape["circle"])) for shape in shapes.SHAPES
    ]
    extra = [
        Case(*combo, False) for combo in shapes.TRAIN_COMBOS if Case(*combo, False) not in ordered
    ]
    rng.shuffle(extra)
    ordered += extra
    if not 1 <= count <= len(ordered):
        raise SystemExit(f"--prompts must be between 1 and {len(ordered)}")
    return ordered[:count]


def generate(
    models: Any,
    label: str,
    baseline: bool,
    work: Sequence[tuple[Case, int, int]],
    args: argparse.Namespace,
    device: torch.device,
    on_picture: Callable[[Picture, Image.Image], None],
) -> None:
    """Generate each (case, seed, size) through the engine, `args.batch` of a size at a time.

    Each is handed on after `args.iterations` steps, and also after each of `args.judge_at`.
    """
    from artgen.engine import BatchGeneration, Generation, GenerationParams

    for start in range(0, len(work), args.batch):
        chunk = work[start : start + args.batch]
        began = time.perf_counter()
        generations = [
            Generation(
                models,
                GenerationParams(
                    prompts=case.prompt,
                    width=size,
                    height=size,
                    iterations=args.iterations,
                    seed=seed,
                    cutn=args.cutn,
                    step_size=args.step_size,
                ),
                device=device,
            )
            for case, seed, size in chunk
        ]
        batch = BatchGeneration(models, generations, device=device)
        for done in range(1, args.iterations + 1):
            results = batch.step()
            if done not in args.judge_at and done != args.iterations:
                continue
            images = [generation.image() for generation in generations]
            seconds = (time.perf_counter() - began) / len(chunk)
            for (case, seed, size), image, result in zip(chunk, images, results, strict=True):
                picture = Picture.of(
                    case, label, baseline, "generated", seed, size, done, seconds,
                    float(result.loss),
                )  # fmt: skip
                on_picture(picture, image)


@torch.no_grad()
def reconstruct(
    models: Any, label: str, work: Sequence[tuple[Case, int, int]], device: torch.device
) -> list[tuple[Picture, Image.Image]]:
    """Each case drawn (size and position from its seed) and passed through the VQGAN alone.

    What the judge reads here bounds what any guidance can get from this VQGAN: the colours and
    shapes its decoder can render at that size.
    """
    import random

    from artgen.engine import from_pil, to_pil
    from artgen.models.quantizers import snap_to_codebook

    vqgan = models.vqgan
    done = []
    for case, seed, size in work:
        rng = random.Random(f"{case.prompt}|{seed}|{size}")
        scene = shapes.Scene(
            case.shape,
            case.colour,
            case.background,
            rng.choice(shapes.SIZES),
            rng.choice(shapes.POSITIONS),
        )
        pixels = from_pil(shapes.draw(scene, size, rng)).to(device) * 2 - 1  # (1, 3, S, S)
        decoded = vqgan.decode(snap_to_codebook(vqgan.encode(pixels), vqgan.codebook))
        picture = Picture.of(case, label, False, "reconstructed", seed, size, 0, 0.0, 0.0)
        done.append((picture, to_pil(decoded.float().add(1).div(2).clamp(0, 1).cpu())))
    return done


def work_list(
    prompts: list[Case], seeds: Sequence[int], sizes: list[int]
) -> list[tuple[Case, int, int]]:
    """Every (case, seed, size), grouped by size so batches share one size."""
    return [(case, seed, size) for size in sizes for case in prompts for seed in seeds]


def judge_pictures(
    pictures: list[Picture], images: list[Image.Image], judge: ShapeJudge, critic: Any
) -> None:
    """Fill in what the judge reads and whether it matches the prompt."""
    read_shapes: list[str] = []
    for start in range(0, len(images), 64):
        read_shapes += judge.classify(images[start : start + 64])
    for picture, image, shape in zip(pictures, images, read_shapes, strict=True):
        reading = read_colours(image)
        picture.read_colour, picture.read_background = reading.colour, reading.background
        picture.shape_fraction = reading.shape_fraction
        picture.read_shape = shape
        picture.correct = {
            "colour": reading.colour == picture.colour,
            "background": reading.background == picture.background,
            "shape": shape == picture.shape,
        }
        picture.correct["all"] = all(picture.correct.values())
        if critic is not None:
            picture.clip_score = clip_score(critic, image, picture.prompt)


@torch.no_grad()
def clip_score(critic: Any, image: Image.Image, prompt: str) -> float:
    """100 x cosine between a (judge) CLIP's embeddings of the picture and the prompt."""
    from artgen.engine import from_pil

    pixels = from_pil(image, (critic.cut_size, critic.cut_size)).to(critic.device)
    image_embedding = torch.nn.functional.normalize(critic.encode_image(pixels), dim=-1)
    text_embedding = torch.nn.functional.normalize(critic.encode_text([prompt]), dim=-1)
    return float(100 * (image_embedding * text_embedding).sum())


def summarise(pictures: list[Picture]) -> list[dict[str, Any]]:
    """Accuracy per (models, size, iterations, subset): all prompts, seen ones, held-out ones."""
    rows = []
    groups = sorted({(p.baseline, p.kind, p.models, p.size, p.iterations) for p in pictures})
    for baseline, kind, models, size, iterations in groups:
        for subset, keep in (
            ("all", lambda p: True),
            ("seen", lambda p: not p.held_out),
            ("held-out", lambda p: p.held_out),
        ):
            chosen = [
                p
                for p in pictures
                if (p.baseline, p.kind, p.models, p.size, p.iterations)
                == (baseline, kind, models, size, iterations)
                and keep(p)
            ]
            if not chosen:
                continue
            row: dict[str, Any] = {
                "models": models,
                "baseline": baseline,
                "kind": kind,
                "size": size,
                "iterations": iterations,
                "subset": subset,
                "pictures": len(chosen),
            }
            for key in ("colour", "background", "shape", "all"):
                row[key] = sum(p.correct[key] for p in chosen) / len(chosen)
            scores = [p.clip_score for p in chosen if p.clip_score is not None]
            row["clip_score"] = statistics.fmean(scores) if scores else None
            generated = kind == "generated"
            row["seconds_per_picture"] = (
                statistics.fmean(p.seconds for p in chosen) if generated else None
            )
            rows.append(row)
    return rows


def targets(rows: list[dict[str, Any]], iterations: int) -> dict[str, Any]:
    """The issue's targets against the models under test (every size; all and held-out).

    Judged on the finished pictures (`iterations`), not on those taken along the way.
    """
    tested = [
        row
        for row in rows
        if not row["baseline"]
        and row["kind"] == "generated"
        and row["iterations"] == iterations
        and row["subset"] != "seen"
    ]
    verdict: dict[str, Any] = {}
    for key, target in TARGETS.items():
        worst = min((row[key] for row in tested), default=None)
        verdict[key] = {
            "target": target,
            "worst": worst,
            "met": worst is not None and worst >= target,
        }
    timed = [row["seconds_per_picture"] for row in tested if row["size"] == 64]
    verdict["seconds_64"] = {
        "target": SECONDS_TARGET,
        "iterations": iterations,
        "seconds": timed[0] if timed else None,
        "met": bool(timed) and iterations >= 100 and timed[0] <= SECONDS_TARGET,
    }
    return verdict


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in (
        "models",
        "size",
        "iterations",
        "prompts",
        "pictures",
        "colour",
        "background",
        "shape",
        "all three",
        "CLIP score",
        "s/picture",
    ):
        table.add_column(name, justify="left" if name in ("models", "prompts") else "right")
    previous = None
    for row in rows:
        group = (row["baseline"], row["kind"], row["models"], row["size"], row["iterations"])
        if previous is not None and group != previous:
            table.add_section()
        previous = group
        label = row["models"] + (" (baseline)" if row["baseline"] else "")
        if row["kind"] == "reconstructed":
            label = f"{row['models']} VQGAN alone: drawings reconstructed"
        score = row["clip_score"]
        table.add_row(
            label,
            str(row["size"]),
            str(row["iterations"]) if row["kind"] == "generated" else "-",
            row["subset"],
            str(row["pictures"]),
            *(f"{row[key]:.0%}" for key in ("colour", "background", "shape", "all")),
            "-" if score is None else f"{score:.1f}",
            "-" if row["seconds_per_picture"] is None else f"{row['seconds_per_picture']:.2f}",
        )
    table.add_row("chance", "", "", "", "", *(f"{CHANCE[k]:.1%}" for k in CHANCE), "", "")
    Console(width=max(120, Console().width)).print(table)


def caption_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def grid(tiles: list[tuple[Image.Image, str, str]], columns: int) -> Image.Image:
    """Pictures in rows of `columns`, each with its prompt (and the judge's reading) under it."""
    largest = max(image.width for image, _, _ in tiles)
    side = largest * -(-GRID_TILE // largest)  # whole-number upscaling keeps the pixels honest
    font, small = caption_font(13), caption_font(11)
    label_height, pad = 52, 6
    rows = -(-len(tiles) // columns)
    sheet = Image.new(
        "RGB", (columns * (side + pad) + pad, rows * (side + label_height + pad) + pad), "white"
    )
    canvas = ImageDraw.Draw(sheet)
    for index, (image, prompt, verdict) in enumerate(tiles):
        x = pad + (index % columns) * (side + pad)
        y = pad + (index // columns) * (side + label_height + pad)
        sheet.paste(image.resize((side, side), Image.Resampling.NEAREST), (x, y))
        # "a red circle" / "on a blue background": two lines fit under the smallest tile.
        what, _, where = prompt.partition(" on ")
        canvas.text((x, y + side + 2), what, fill="black", font=font)
        canvas.text((x, y + side + 18), f"on {where}" if where else "", fill="black", font=font)
        canvas.text((x, y + side + 36), verdict, fill=(90, 90, 90), font=small)
    return sheet


def model_files_sha256(vqgan: str, clip: str) -> dict[str, str] | None:
    """The demo files' digests (what was measured); other models are named, not hashed here."""
    from artgen.models import catalog

    if "demo" not in (vqgan, clip):
        return None
    return dict(getattr(catalog, "DEMO_SHA256", {}))


def model_label(vqgan: str, clip: str) -> str:
    return vqgan if vqgan == clip else f"{vqgan} + {clip}"


def load(vqgan: str, clip: str, device: torch.device) -> Any:
    from artgen.config import get_settings
    from artgen.models.catalog import Catalog
    from artgen.models.loading import load_models

    return load_models(vqgan, [clip], device, Catalog(get_settings().home))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vqgan", default="demo", help="VQGAN under test (catalog name)")
    parser.add_argument("--clip", default="demo", help="CLIP that guides the pictures")
    parser.add_argument(
        "--baseline",
        default="tiny",
        help="models run the same way to compare: one name for both, or none",
    )
    parser.add_argument(
        "--judge-clip",
        default=None,
        help="a second CLIP (not --clip) giving each picture a CLIP score",
    )
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument(
        "--judge-at",
        default="",
        help="also judge the pictures after these iterations (comma-separated, below --iterations)",
    )
    parser.add_argument("--cutn", type=int, default=32)
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=1, help="same-size pictures stepped together")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--reconstructions",
        action="store_true",
        help="also judge drawings reconstructed by the tested VQGAN alone",
    )
    parser.add_argument("--grid", type=Path, default=None, help="write a grid of results here")
    parser.add_argument("--grid-count", type=int, default=16)
    parser.add_argument("--grid-columns", type=int, default=4)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.judge_clip is not None and args.judge_clip == args.clip:
        parser.error("--judge-clip must differ from --clip: the guiding CLIP cannot judge itself")
    if args.batch < 1 or args.seeds < 1 or args.iterations < 1:
        parser.error("--batch, --seeds and --iterations must be at least 1")
    try:
        args.judge_at = sorted({int(done) for done in args.judge_at.split(",") if done.strip()})
    except ValueError:
        parser.error(f"--judge-at takes whole numbers separated by commas, not {args.judge_at!r}")
    if any(not 1 <= done < args.iterations for done in args.judge_at):
        parser.error(f"--judge-at must lie between 1 and --iterations - 1 ({args.iterations - 1})")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from artgen.bench import device_name

    device = torch.device(args.device)
    sizes = [int(size) for size in args.sizes.split(",")]
    prompts = cases(args.prompts)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    work = work_list(prompts, seeds, sizes)
    judge = ShapeJudge.load()
    critic = None
    if args.judge_clip is not None:
        from artgen.config import get_settings
        from artgen.models.catalog import Catalog

        critic = Catalog(get_settings().home).build_critic(args.judge_clip, device)
        critic.eval().requires_grad_(False)

    runs = [(model_label(args.vqgan, args.clip), False, args.vqgan, args.clip)]
    if args.baseline != "none":
        runs.append((args.baseline, True, args.baseline, args.baseline))
    pictures: list[Picture] = []
    images: list[Image.Image] = []
    grid_tiles: list[tuple[Picture, Image.Image]] = []
    grid_size = max(sizes)
    for label, baseline, vqgan, clip in runs:
        models = load(vqgan, clip, device)

        def keep(
            picture: Picture, image: Image.Image, label: str = label, done: int = len(pictures)
        ) -> None:
            pictures.append(picture)
            images.append(image)
            if picture.iterations != args.iterations:
                return  # taken along the way: judged, but neither in the grid nor counted
            if not picture.baseline and picture.seed == seeds[0] and picture.size == grid_size:
                grid_tiles.append((picture, image))
            count = sum(p.iterations == args.iterations for p in pictures[done:])
            if count % 4 == 0 or count == len(work):
                print(f"{label}: {count}/{len(work)} pictures", file=sys.stderr, flush=True)

        generate(models, label, baseline, work, args, device, keep)
        if args.reconstructions and not baseline:
            for picture, image in reconstruct(models, label, work, device):
                pictures.append(picture)
                images.append(image)
        del models
    judge_pictures(pictures, images, judge, critic)
    rows = summarise(pictures)
    verdict = targets(rows, args.iterations)
    title = (
        f"{args.vqgan} + {args.clip} vs {args.baseline}: {len(prompts)} prompts x "
        f"{args.seeds} seeds, {args.iterations} iterations, cutn {args.cutn}, "
        f"{device_name(device)}"
    )
    print_table(rows, title)
    for key, value in verdict.items():
        print(f"target {key}: {value}")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "command": "python3 benchmarks/bench_quality.py " + " ".join(argv),
        "created_at": stamp,
        "device": args.device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "vqgan": args.vqgan,
        "clip": args.clip,
        "baseline": args.baseline,
        "judge_clip": args.judge_clip,
        "model_files_sha256": model_files_sha256(args.vqgan, args.clip),
        "judge": "artgen.training.judge: read_colours (procedural) + ShapeClassifier "
        "(judge_shapes.pt, trained on shapes.draw pictures only)",
        "prompts": len(prompts),
        "held_out_prompts": sum(case.held_out for case in prompts),
        "seeds": seeds,
        "sizes": sizes,
        "iterations": args.iterations,
        "judge_at": args.judge_at,
        "cutn": args.cutn,
        "step_size": args.step_size,
        "batch": args.batch,
        "chance": CHANCE,
        "summary": rows,
        "targets": verdict,
        "pictures": [asdict(picture) for picture in pictures],
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{args.device.replace(':', '')}-{stamp}-quality.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    if args.grid is not None:
        tiles = [
            (
                image,
                picture.prompt + (" *" if picture.held_out else ""),
                f"judge: {picture.read_colour} {picture.read_shape} / {picture.read_background}",
            )
            for picture, image in grid_tiles[: args.grid_count]
        ]
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        grid(tiles, args.grid_columns).save(args.grid, optimize=True)
        print(f"wrote {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
