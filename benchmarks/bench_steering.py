"""Does the demo CLIP steer a shape it is asked for? Generation from a drawn start, judged.

`bench_quality.py` measures pictures made from random VQGAN codes, where a small critic must both
find the colours and form one shape. This measures the second part alone: each run starts from a
drawn picture in the prompt's colours (a circle, or a blob from `shapes.draw_blob`) and asks for
each of the four shapes ("a red triangle on a blue background"); the independent shape judge
(`artgen.training.judge`) reads the result. A critic that steers shapes turns the circle into a
triangle when asked; one that does not leaves the start as it is (right for "circle" only).

    python3 benchmarks/bench_steering.py                           # the shipped demo CLIP
    python3 benchmarks/bench_steering.py --clip-weights OLD.pt --clip-weights NEW.pt  # side by side

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-steering.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from artgen.training import shapes
from artgen.training.judge import ShapeJudge

RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = (("red", "blue"), ("yellow", "purple"), ("white", "black"), ("green", "orange"))
STARTS = ("circle", "blob")


def models_with(weights: Path | None, device: torch.device):
    """The demo VQGAN and the demo CLIP, or that CLIP architecture with other weights."""
    from artgen.models import demo
    from artgen.models.loading import Models
    from artgen.models.presets import DEMO_SHA256

    vqgan = demo.demo_vqgan(DEMO_SHA256, device)
    if weights is None:
        critic = demo.demo_critic(DEMO_SHA256, device)
    else:
        config = demo.checked_file(demo.CLIP_CONFIG, DEMO_SHA256)
        critic = demo.config_critic(config, weights, "demo", device)
    return Models(vqgan, [critic], "demo", ["demo"])


def start_picture(start: str, colour: str, background: str, seed: int):
    scene = shapes.Scene("circle", colour, background, "large", "center")
    draw = shapes.draw if start == "circle" else shapes.draw_blob
    return draw(scene, 64, random.Random(seed))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clip-weights",
        type=Path,
        action="append",
        default=None,
        help="a demo-architecture CLIP state dict to measure (repeat for side by side); "
        "default: the shipped demo CLIP",
    )
    parser.add_argument("--pairs", type=int, default=2, help=f"colour pairs, 1-{len(PAIRS)}")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--cutn", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 1 <= args.pairs <= len(PAIRS):
        raise SystemExit(f"--pairs must be between 1 and {len(PAIRS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    from artgen.engine import Generation, GenerationParams
    from artgen.engine.stepping import run

    device = torch.device("cpu")
    judge = ShapeJudge.load()
    runs, summary = [], []
    for weights in args.clip_weights or [None]:
        label = "shipped demo CLIP" if weights is None else str(weights)
        models = models_with(weights, device)
        hits: dict[str, list[bool]] = {start: [] for start in STARTS}
        began = time.perf_counter()
        for colour, background in PAIRS[: args.pairs]:
            for start in STARTS:
                init = start_picture(start, colour, background, args.seed)
                for shape in shapes.SHAPES:
                    scene = shapes.Scene(shape, colour, background, "large", "center")
                    prompt = shapes.prompt_for(scene)
                    params = GenerationParams(
                        prompts=prompt,
                        width=64,
                        height=64,
                        iterations=args.iterations,
                        seed=args.seed,
                        cutn=args.cutn,
                    )
                    image = run(Generation(models, params, device=device, init_image=init))
                    read = judge.classify([image])[0]
                    hits[start].append(read == shape)
                    runs.append(
                        {"clip": label, "start": start, "prompt": prompt, "read_shape": read}
                    )
        seconds = time.perf_counter() - began
        for start in STARTS:
            summary.append(
                {
                    "clip": label,
                    "start": start,
                    "runs": len(hits[start]),
                    "shape": sum(hits[start]) / len(hits[start]),
                    # Leaving the start alone scores 1 of 4 from a circle (the "circle" prompt).
                    "left_alone": 1 / len(shapes.SHAPES) if start == "circle" else None,
                    "seconds_per_run": seconds / sum(len(h) for h in hits.values()),
                }
            )
        del models
    table = Table(title=f"Shape steering from a drawn start: {args.iterations} iterations, 64x64")
    for name in ("CLIP", "start", "runs", "asked shape read", "s/run"):
        table.add_column(name, justify="left" if name in ("CLIP", "start") else "right")
    for row in summary:
        table.add_row(
            row["clip"],
            row["start"],
            str(row["runs"]),
            f"{row['shape']:.0%}",
            f"{row['seconds_per_run']:.1f}",
        )
    Console(width=120).print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{device.type}-{stamp}-steering.json"
    data = {
        "command": "python3 benchmarks/bench_steering.py " + " ".join(argv),
        "created_at": stamp,
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "iterations": args.iterations,
        "cutn": args.cutn,
        "seed": args.seed,
        "pairs": [list(pair) for pair in PAIRS[: args.pairs]],
        "summary": summary,
        "runs": runs,
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
