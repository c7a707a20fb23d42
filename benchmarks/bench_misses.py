"""Is a missed prompt the search's fault or the critic's? Each picture's loss against drawings.

`bench_quality.py` says how often a picture shows its prompt; this says why the others do not.
Each prompt x seed is generated from random codes as there (the seed's objective, 64x64), read by
the same independent judge, and scored by the seed's loss under the guiding CLIP (its cutouts and
augmentations, the mean over `--draws` draws of them) next to drawings of the prompt
(`shapes.draw`, encoded by the VQGAN: what a right answer scores) and drawings of each other shape
in the prompt's colours. A miss whose picture scores below the drawings of its prompt is the
critic's: the objective prefers it to a right answer, so no search fixes it. A miss that scores
above them is the search's: a better answer under the critic existed and was not reached.

    python3 benchmarks/bench_misses.py                     # 24 prompts, seed 1, the demo models
    python3 benchmarks/bench_misses.py --prompts 48 --seeds 2 --iterations 300

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-misses.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from bench_quality import Case, cases, load, model_files_sha256, model_label

from artgen.training import shapes
from artgen.training.judge import ShapeJudge, read_colours

RESULTS = Path(__file__).resolve().parent / "results"
CRITERIA = ("shape", "all")  # what a hit means: the shape read right, or all three


@torch.no_grad()
def mean_loss(generation: Any, draws: int) -> float:
    """The seed's loss of the generation's current picture, averaged over `draws` cutout draws."""
    return statistics.fmean(float(generation.loss()) for _ in range(draws))


def drawing_losses(
    models: Any, case: Case, shape: str, count: int, args: argparse.Namespace, device: torch.device
) -> list[float]:
    """The loss for `case`'s prompt of `count` drawings of `shape` in its colours (random size
    and place, each encoded by the VQGAN as an init image is)."""
    from artgen.engine import Generation

    rng = random.Random(f"{case.prompt}|{shape}")
    losses = []
    for index in range(count):
        scene = shapes.Scene(
            shape,
            case.colour,
            case.background,
            rng.choice(shapes.SIZES),
            rng.choice(shapes.POSITIONS),
        )
        drawing = shapes.draw(scene, args.size, rng)
        generation = Generation(
            models, params(case, 10_000 + index, args), device=device, init_image=drawing
        )
        losses.append(mean_loss(generation, args.draws))
    return losses


def params(case: Case, seed: int, args: argparse.Namespace) -> Any:
    from artgen.engine import GenerationParams

    return GenerationParams(
        prompts=case.prompt,
        width=args.size,
        height=args.size,
        iterations=args.iterations,
        seed=seed,
        cutn=args.cutn,
        step_size=args.step_size,
    )


def measure(
    models: Any, judge: ShapeJudge, case: Case, seed: int, args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """One generated picture: what the judge reads, its loss, and the drawings' losses."""
    from artgen.engine import Generation
    from artgen.engine.stepping import run

    generation = Generation(models, params(case, seed, args), device=device)
    image = run(generation)
    reading = read_colours(image)
    read_shape = judge.classify([image])[0]
    correct = {
        "colour": reading.colour == case.colour,
        "background": reading.background == case.background,
        "shape": read_shape == case.shape,
    }
    correct["all"] = all(correct.values())
    right = drawing_losses(models, case, case.shape, args.drawings, args, device)
    wrong = [
        loss
        for other in shapes.SHAPES
        if other != case.shape
        for loss in drawing_losses(models, case, other, max(1, args.drawings // 2), args, device)
    ]
    loss = mean_loss(generation, args.draws)
    drawing = statistics.fmean(right)
    return {
        "prompt": case.prompt,
        "held_out": case.held_out,
        "seed": seed,
        "read_colour": reading.colour,
        "read_background": reading.background,
        "read_shape": read_shape,
        "correct": correct,
        "loss": loss,
        "drawing_loss": drawing,
        "best_drawing_loss": min(right),
        "wrong_shape_drawing_loss": statistics.fmean(wrong),
        # Where a miss lies: below its prompt's drawings, the critic prefers it to a right answer.
        "verdict": {
            key: "hit" if correct[key] else ("critic" if loss < drawing else "search")
            for key in CRITERIA
        },
    }


def summarise(pictures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for subset, keep in (("all", lambda p: True), ("held-out", lambda p: p["held_out"])):
        chosen = [p for p in pictures if keep(p)]
        if not chosen:
            continue
        for key in CRITERIA:
            verdicts = [p["verdict"][key] for p in chosen]
            rows.append(
                {
                    "subset": subset,
                    "criterion": key,
                    "pictures": len(chosen),
                    **{name: verdicts.count(name) for name in ("hit", "critic", "search")},
                    "drawings_ranked_right": sum(
                        p["drawing_loss"] < p["wrong_shape_drawing_loss"] for p in chosen
                    )
                    / len(chosen),
                    "loss": statistics.fmean(p["loss"] for p in chosen),
                    "drawing_loss": statistics.fmean(p["drawing_loss"] for p in chosen),
                    "wrong_shape_drawing_loss": statistics.fmean(
                        p["wrong_shape_drawing_loss"] for p in chosen
                    ),
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in (
        "prompts",
        "hit means",
        "pictures",
        "hits",
        "misses: critic's",
        "misses: search's",
        "drawings ranked right",
        "loss: picture",
        "loss: drawing",
        "loss: wrong shape",
    ):
        table.add_column(name, justify="left" if name in ("prompts", "hit means") else "right")
    for row in rows:
        table.add_row(
            row["subset"],
            "all three" if row["criterion"] == "all" else row["criterion"],
            str(row["pictures"]),
            str(row["hit"]),
            str(row["critic"]),
            str(row["search"]),
            f"{row['drawings_ranked_right']:.0%}",
            *(f"{row[key]:.4f}" for key in ("loss", "drawing_loss", "wrong_shape_drawing_loss")),
        )
    Console(width=max(120, Console().width)).print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vqgan", default="demo", help="VQGAN (catalog name)")
    parser.add_argument("--clip", default="demo", help="CLIP that guides and scores the pictures")
    parser.add_argument("--prompts", type=int, default=24, help="the first N of bench_quality's")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=1, help="seeds are FIRST..FIRST+N-1")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--cutn", type=int, default=16)
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--draws", type=int, default=16, help="cutout draws averaged per loss")
    parser.add_argument(
        "--drawings", type=int, default=4, help="drawings of the prompt (half as many per other)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for name in ("seeds", "iterations", "draws", "drawings"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from artgen.bench import device_name

    device = torch.device(args.device)
    prompts = cases(args.prompts)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    models = load(args.vqgan, args.clip, device)
    judge = ShapeJudge.load()
    pictures = []
    for case in prompts:
        for seed in seeds:
            pictures.append(measure(models, judge, case, seed, args, device))
            print(
                f"{len(pictures)}/{len(prompts) * len(seeds)} {case.prompt}: read "
                f"{pictures[-1]['read_shape']}, verdict {pictures[-1]['verdict']['shape']}",
                file=sys.stderr,
                flush=True,
            )
    rows = summarise(pictures)
    label = model_label(args.vqgan, args.clip)
    print_table(
        rows,
        f"{label}: {len(prompts)} prompts x {len(seeds)} seeds, {args.size}x{args.size}, "
        f"{args.iterations} iterations, cutn {args.cutn}, {device_name(device)}",
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "command": "python3 benchmarks/bench_misses.py " + " ".join(argv),
        "created_at": stamp,
        "device": args.device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "vqgan": args.vqgan,
        "clip": args.clip,
        "model_files_sha256": model_files_sha256(args.vqgan, args.clip),
        "prompts": len(prompts),
        "seeds": seeds,
        "size": args.size,
        "iterations": args.iterations,
        "cutn": args.cutn,
        "step_size": args.step_size,
        "draws": args.draws,
        "drawings": args.drawings,
        "summary": rows,
        "pictures": pictures,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{args.device.replace(':', '')}-{stamp}-misses.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
