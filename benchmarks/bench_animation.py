"""Animations on the engine path: seconds per frame by size, and memory over a long animation.

Part 1 (speed): for each size, an Animation with the demo models (frame 0 and every later frame
`--iterations-per-frame` iterations, zoom 1.02 and a 0.5 degree turn per frame); the later frames
are timed, each including its setup (warp, encode, a new optimiser) and its iterations, in wall
time and in this process's CPU time (with `--threads 1`, less moved by other work on the machine).

Part 2 (memory): a `--memory-frames` animation at 64x64, 1 iteration per frame, its frames
streamed to `media.write_mp4` as they finish (as `artgen animate` does); the process's RSS (and
the encoder's, ffmpeg) is sampled after frames 10, 100, 200 and 300. Flat RSS across the samples
means memory does not grow with the frame count.

    python3 benchmarks/bench_animation.py                       # demo models, CPU
    python3 benchmarks/bench_animation.py --model tiny --sizes 32 --frames 2 --memory-frames 20

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-animation.json.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from artgen.bench import device_label, device_name, environment, write_json
from artgen.config import Settings
from artgen.engine.animation import Animation
from artgen.engine.animation_params import AnimationParams
from artgen.engine.images import to_pixels
from artgen.engine.params import GenerationParams
from artgen.media import write_mp4
from artgen.models.catalog import Catalog
from artgen.models.loading import Models, load_models
from artgen.videos import VideoLimits, probe

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "a yellow star on a purple background"
MOTION = {"zoom": "0:(1.02)", "angle": "0:(0.5)"}
MEMORY_SAMPLES = (10, 100, 200, 300)


def load(model: str, device: torch.device) -> Models:
    """The named VQGAN with its default CLIP (demo: the demo CLIP), as `artgen animate` loads."""
    settings = Settings(model=model)
    return load_models(model, settings.resolved_clip_models, device, Catalog(settings.home))


def seconds_per_frame(
    models: Models, device: torch.device, size: int, frames: int, per_frame: int, cutn: int
) -> dict[str, Any]:
    """Time frames 1..frames of an animation (frame 0, the picture, untimed)."""
    params = GenerationParams(
        prompts=PROMPT, width=size, height=size, iterations=per_frame, cutn=cutn, seed=0
    )
    motion = AnimationParams(frames=frames + 1, iterations_per_frame=per_frame, **MOTION)
    animation = Animation(models, params, motion, device=device)
    times: list[float] = []
    cpu_times: list[float] = []
    begin = cpu_begin = None
    while animation.iteration < animation.iterations:
        animation.step()
        if animation.frame_done is None:
            continue
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now, cpu_now = time.perf_counter(), time.process_time()
        if begin is not None and cpu_begin is not None:
            times.append(now - begin)
            cpu_times.append(cpu_now - cpu_begin)
        begin, cpu_begin = now, cpu_now
    return {
        "size": size,
        "frames_timed": len(times),
        "iterations_per_frame": per_frame,
        "cutn": cutn,
        "seconds_per_frame": sum(times) / len(times),
        "fastest_frame_seconds": min(times),
        "slowest_frame_seconds": max(times),
        # CPU time of this process: on a shared machine less moved by the others' load.
        "cpu_seconds_per_frame": sum(cpu_times) / len(cpu_times),
    }


def rss_sample(frame: int, process: psutil.Process) -> dict[str, Any]:
    """This process's RSS now and at its peak, and its children's (ffmpeg) RSS, in MiB."""
    children = sum(child.memory_info().rss for child in process.children(recursive=True))
    return {
        "frame": frame,
        "rss_mib": process.memory_info().rss / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "encoder_rss_mib": children / 2**20,
    }


def memory_run(
    models: Models, device: torch.device, frames: int, cutn: int, output: Path
) -> dict[str, Any]:
    """A `frames`-frame 64x64 animation, 1 iteration per frame, streamed to an MP4; RSS samples."""
    params = GenerationParams(prompts=PROMPT, width=64, height=64, iterations=1, cutn=cutn, seed=0)
    motion = AnimationParams(frames=frames, iterations_per_frame=1, **MOTION)
    animation = Animation(models, params, motion, device=device)
    process = psutil.Process()
    samples: list[dict[str, Any]] = []
    wanted = {count for count in MEMORY_SAMPLES if count <= frames} | {frames}

    def finished_frames() -> Iterator[np.ndarray]:
        while animation.iteration < animation.iterations:
            animation.step()
            if animation.frame_done is None:
                continue
            yield to_pixels(animation.frame_tensor()).cpu().numpy()
            # Sampled after write_mp4 asked for the next frame, so this one is in the encoder.
            if animation.frame_done + 1 in wanted:
                samples.append(rss_sample(animation.frame_done + 1, process))

    begin = time.perf_counter()
    written = write_mp4(finished_frames(), output, motion.fps)
    seconds = time.perf_counter() - begin
    info = probe(output, VideoLimits(max_frames=max(frames, 600)))
    return {
        "frames": frames,
        "frames_written": written,
        "mp4_frames": info.frames,
        "mp4_bytes": output.stat().st_size,
        "cutn": cutn,
        "seconds": seconds,
        "samples": samples,
        "rss_growth_mib": samples[-1]["rss_mib"] - samples[0]["rss_mib"],
    }


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    speed = Table(title=f"seconds per frame, {result['model']} models on {result['device_name']}")
    for column in ("size", "it/frame", "cutn", "s/frame", "fastest", "slowest", "CPU s/frame"):
        speed.add_column(column, justify="right")
    for case in result["speed"]:
        speed.add_row(
            f"{case['size']}x{case['size']}",
            str(case["iterations_per_frame"]),
            str(case["cutn"]),
            f"{case['seconds_per_frame']:.2f}",
            f"{case['fastest_frame_seconds']:.2f}",
            f"{case['slowest_frame_seconds']:.2f}",
            f"{case['cpu_seconds_per_frame']:.2f}",
        )
    console.print(speed)
    run = result["memory"]
    memory = Table(
        title=f"memory over {run['frames']} frames (64x64, 1 it/frame, cutn {run['cutn']}, "
        f"streamed to MP4: {run['mp4_frames']} frames, {run['seconds']:.0f} s)"
    )
    for column in ("after frame", "RSS MiB", "peak RSS MiB", "ffmpeg RSS MiB"):
        memory.add_column(column, justify="right")
    for sample in run["samples"]:
        memory.add_row(
            str(sample["frame"]),
            f"{sample['rss_mib']:.0f}",
            f"{sample['peak_rss_mib']:.0f}",
            f"{sample['encoder_rss_mib']:.0f}",
        )
    console.print(memory)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo (default) or tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="64,128", help="square sizes, comma-separated")
    parser.add_argument("--frames", type=int, default=4, help="timed frames per size")
    parser.add_argument("--iterations-per-frame", type=int, default=10)
    parser.add_argument("--cutn", type=int, default=16)
    parser.add_argument("--memory-frames", type=int, default=300)
    parser.add_argument("--memory-cutn", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = load(args.model, device)
    speed = [
        seconds_per_frame(
            models, device, int(size), args.frames, args.iterations_per_frame, args.cutn
        )
        for size in args.sizes.split(",")
    ]
    with tempfile.TemporaryDirectory(prefix="artgen-bench-animation-") as directory:
        memory = memory_run(
            models, device, args.memory_frames, args.memory_cutn, Path(directory) / "long.mp4"
        )
    result = {
        "model": args.model,
        "device": str(device),
        "device_name": device_name(device),
        "command": "python3 benchmarks/bench_animation.py " + " ".join(argv),
        "environment": environment(),
        "speed": speed,
        "memory": memory,
    }
    print_tables(result)
    path = write_json(result, args.output_dir, device_label(device), "animation")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
