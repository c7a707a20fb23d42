"""Fast path vs reference path from the same seed: losses step by step, final image, z gradients.

    python3 benchmarks/bench_agreement.py --model tiny --device cpu --size 32 --iterations 4
    python3 benchmarks/bench_agreement.py --model random-f16 --device cuda

Prints the figures and the verdict and writes JSON to
benchmarks/results/<device>-<UTC time>-agreement.json; exits 1 when the paths disagree beyond the
tolerances. benchmarks/gpu_suite.py runs the same check (check_agreement) as one of its parts.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from artgen.bench import build_models, device_label, device_name, use_case_layout, write_json
from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.engine.stepping import run
from artgen.models.loading import Models

RESULTS = Path(__file__).resolve().parent / "results"

# Fast (fp32) vs reference z gradients: the tiny models give a mean cosine of about 0.988 at
# 32 px, cutn 16, and a broken augmentation (a flip, rotation or shift the wrong way) 0.59-0.79.
GRADIENT_COSINE = 0.98
GRADIENT_DIFFERENCE = 0.3


def psnr(first: Image.Image, second: Image.Image) -> float:
    """PSNR in dB between two same-size RGB PIL images (inf when identical)."""
    a = np.asarray(first.convert("RGB"), dtype=np.float64)
    b = np.asarray(second.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def loss_trajectory(
    models: Models, params: GenerationParams, device: torch.device, fast: bool
) -> tuple[list[float], Image.Image]:
    """(losses of every step, final image) of one run on the given path."""
    use_case_layout(models, device, fast)
    generation = Generation(models, params, device=device, options=EngineOptions(fast=fast))
    losses: list[float] = []
    final = run(generation, lambda info: losses.append(info.loss()))
    return losses, final


AGREEMENT_PROMPT = "a castle in the clouds:1 | fog:-0.5"


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """fp32 matmuls and convolutions without TF32 on CUDA (the default lets cuDNN use TF32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def z_gradient(
    models: Models, params: GenerationParams, device: torch.device, fast: bool, bf16: bool | None
) -> torch.Tensor:
    """dLoss/dz (flattened, float64 on the CPU) of the first step of a generation."""
    use_case_layout(models, device, fast)
    generation = Generation(
        models, params, device=device, options=EngineOptions(fast=fast, bf16=bf16)
    )
    generation.loss().backward()
    return generation.z.grad.detach().flatten().double().cpu()


def cosine(first: torch.Tensor, second: torch.Tensor) -> float:
    """Cosine similarity of two flat tensors."""
    return float(torch.nn.functional.cosine_similarity(first, second, dim=0))


def gradient_agreement(
    models: Models, device: torch.device, size: int = 64, cutn: int = 16, draws: int = 4
) -> dict[str, Any]:
    """dLoss/dz of one step, fast path in fp32 vs reference, per seed: cosine, relative difference.

    Both paths draw the start z and their cutout parameters from the job's generator in the same
    order, so one seed gives both the same z and the same cutouts: what remains is how each path
    computes. On CUDA the default fast path (bf16) is compared too, for information.
    """
    cosines, differences, bf16_cosines = [], [], []
    for seed in range(draws):
        params = GenerationParams(
            prompts=AGREEMENT_PROMPT, width=size, height=size, iterations=1, seed=seed, cutn=cutn
        )
        with strict_fp32():
            reference = z_gradient(models, params, device, fast=False, bf16=None)
            fast = z_gradient(models, params, device, fast=True, bf16=False)
        cosines.append(cosine(fast, reference))
        differences.append(float((fast - reference).norm() / reference.norm()))
        if device.type == "cuda":
            bf16 = z_gradient(models, params, device, fast=True, bf16=True)
            bf16_cosines.append(cosine(bf16, reference))
    return {
        "z_gradient_draws": draws,
        "z_gradient_cosines": cosines,
        "z_gradient_cosine_mean": sum(cosines) / draws,
        "z_gradient_cosine_min": min(cosines),
        "z_gradient_relative_differences": differences,
        "z_gradient_relative_difference_max": max(differences),
        "z_gradient_cosine_bf16_mean": sum(bf16_cosines) / draws if bf16_cosines else None,
    }


def check_agreement(
    models: Models,
    device: torch.device,
    size: int = 64,
    cutn: int = 16,
    iterations: int = 20,
    tolerance: float = 0.05,
    gradient_cosine: float = GRADIENT_COSINE,
    gradient_difference: float = GRADIENT_DIFFERENCE,
    gradient_draws: int = 4,
) -> dict[str, Any]:
    """Run reference and fast path from the same seed; compare losses step by step and images.

    The fast path on CUDA runs in bf16, so agreement is within `tolerance` (relative), not exact.
    The losses of random-weight models barely move, so the z gradients of both paths in fp32 are
    compared too (gradient_agreement): the mean cosine must reach `gradient_cosine` and every
    relative difference stay within `gradient_difference`.
    """
    params = GenerationParams(
        prompts=AGREEMENT_PROMPT,
        width=size,
        height=size,
        iterations=iterations,
        seed=0,
        cutn=cutn,
    )
    reference_losses, reference_image = loss_trajectory(models, params, device, fast=False)
    fast_losses, fast_image = loss_trajectory(models, params, device, fast=True)
    relative = [
        abs(fast - reference) / max(abs(reference), 1e-8)
        for reference, fast in zip(reference_losses, fast_losses, strict=True)
    ]
    first, mean = relative[0], sum(relative) / len(relative)
    gradients = gradient_agreement(models, device, size, cutn, gradient_draws)
    gradients_ok = (
        gradients["z_gradient_cosine_mean"] >= gradient_cosine
        and gradients["z_gradient_relative_difference_max"] <= gradient_difference
    )
    return {
        "size": size,
        "cutn": cutn,
        "iterations": iterations,
        "tolerance": tolerance,
        "reference_losses": reference_losses,
        "fast_losses": fast_losses,
        "first_step_relative_difference": first,
        "mean_relative_difference": mean,
        "max_relative_difference": max(relative),
        "final_image_psnr_db": psnr(reference_image, fast_image),
        "z_gradient_cosine_threshold": gradient_cosine,
        "z_gradient_relative_difference_threshold": gradient_difference,
        **gradients,
        "ok": first <= tolerance and mean <= tolerance and gradients_ok,
    }


SUMMARY_KEYS = (
    "ok", "size", "cutn", "iterations", "tolerance", "first_step_relative_difference",
    "mean_relative_difference", "max_relative_difference", "final_image_psnr_db",
    "z_gradient_draws", "z_gradient_cosine_threshold", "z_gradient_cosine_mean",
    "z_gradient_cosine_min", "z_gradient_relative_difference_threshold",
    "z_gradient_relative_difference_max", "z_gradient_cosine_bf16_mean",
)  # fmt: skip


def agreement_summary(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The agreement check's verdict and figures, without the per-step losses."""
    if data is None:
        return None
    # Identical images give an infinite PSNR, which strict JSON readers refuse: write it as text.
    return {
        key: "inf" if isinstance(data[key], float) and math.isinf(data[key]) else data[key]
        for key in SUMMARY_KEYS
    }


def agreement_line(data: dict[str, Any]) -> str:
    """The agreement check in one line: losses, final image, z gradients, verdict."""
    bf16 = data["z_gradient_cosine_bf16_mean"]
    return (
        f"first-step loss difference {data['first_step_relative_difference']:.4f}, "
        f"mean {data['mean_relative_difference']:.4f}, final image PSNR "
        f"{data['final_image_psnr_db']:.1f} dB; z gradient fast fp32 vs reference: cosine "
        f"{data['z_gradient_cosine_mean']:.4f} (min {data['z_gradient_cosine_min']:.4f}, "
        f">= {data['z_gradient_cosine_threshold']} needed), relative difference max "
        f"{data['z_gradient_relative_difference_max']:.3f} "
        f"(<= {data['z_gradient_relative_difference_threshold']})"
        + (f", bf16 cosine {bf16:.4f}" if bf16 is not None else "")
        + f": {'ok' if data['ok'] else 'NOT OK'}"
    )


def print_table(data: dict[str, Any]) -> None:
    """The summary figures, one per line."""
    print(f"fast vs reference, {data['device_name']} ({data['size']} px, cutn {data['cutn']})")
    for key, value in (agreement_summary(data) or {}).items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<42} {shown:>10}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "random-f16"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cutn", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--draws", type=int, default=4, help="seeds whose z gradients are compared")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    models = build_models(args.model, device)
    data = check_agreement(
        models, device, size=args.size, cutn=args.cutn, iterations=args.iterations,
        gradient_draws=args.draws,
    )  # fmt: skip
    data.update(
        device=device_label(device),
        device_name=device_name(device),
        torch_version=torch.__version__,
        model=args.model,
        command="python3 benchmarks/bench_agreement.py " + " ".join(argv),
    )
    print_table(data)
    print(agreement_line(data))
    # json.dumps writes an infinite PSNR (identical images) as Infinity; the summary says "inf".
    print(f"wrote {write_json(data, args.output_dir, data['device'], 'agreement')}")
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
