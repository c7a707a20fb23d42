"""Train the `demo` VQGAN and CLIP from a seed: `python -m artgen.training.demo --out DIR`.

Stages run in order (VQGAN, the base CLIP, then the CLIP's shape stage), each resumable: a
stage saves its trainer state every `--save-every` steps under DIR/state/, and a rerun of the
same command continues from there. A finished stage writes its files into DIR (the base CLIP as
`clip_base.pt`, which the shape stage continues) and is skipped on the next run; `train_log.json`
records the settings, seconds spent and the measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from artgen.models.checkpoints import load_vqgan
from artgen.training import clip as clip_training
from artgen.training import clip_shapes
from artgen.training import vqgan as vqgan_training

VQGAN_CONFIG_FILE = "vqgan.yaml"
VQGAN_CHECKPOINT_FILE = "vqgan.ckpt"
CLIP_CONFIG_FILE = "clip.json"
CLIP_WEIGHTS_FILE = "clip.pt"
CLIP_BASE_WEIGHTS_FILE = "clip_base.pt"  # the base stage's CLIP, which the shape stage continues
LOG_FILE = "train_log.json"
# The shipped VQGAN's latent scale (`vqgan.scale_latent`): the seed's step size 0.1 then moves
# z as 2.0 did before scaling, which painted the benchmark's prompts best of the step sizes
# measured (0.1 to 3.0 equivalents, docs/demo-models.md).
DEMO_LATENT_SCALE = 0.05
# Its codebook is the trained one: replacing it by 4096 k-means centres of the encoder's outputs
# (`--vqgan-final-codes 4096`, `vqgan.densify_codebook`) painted no better (docs/demo-models.md).
DEMO_FINAL_CODES = 0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _save(data: Any, path: Path) -> None:
    """torch.save through a temporary file, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(data, temporary)
    os.replace(temporary, path)


def _write_text(text: str, path: Path) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class RunLog:
    """DIR/train_log.json: per stage, its settings, seconds (summed over resumes) and figures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = (
            json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        )

        self.owned: set[str] = set()

    def stage(self, name: str) -> dict[str, Any]:
        self.owned.add(name)
        return self.data.setdefault(name, {"seconds": 0.0})

    def write(self) -> None:
        # Only our stages are written over what is on disk: stages may run as separate processes.
        on_disk = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        self.data = {**on_disk, **{name: self.data[name] for name in self.owned}}
        self.data["machine"] = {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        }
        _write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", self.path)


def _train_resumably(
    name: str, trainer: Any, total: int, out: Path, run_log: RunLog, save_every: int
) -> None:
    """Step `trainer` to `total`, saving its state and the run log every `save_every` steps."""
    entry = run_log.stage(name)
    state_path = out / "state" / f"{name}.pt"
    if state_path.exists():
        trainer.load(torch.load(state_path, map_location=trainer.device, weights_only=True))
        _log(f"{name}: resumed at step {trainer.step}")
    started = time.perf_counter()
    while trainer.step < total:
        target = min(total, (trainer.step // save_every + 1) * save_every)
        while trainer.step < target:
            losses = trainer.train_step()
        _save(trainer.state(), state_path)
        entry["seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        entry["step"] = trainer.step
        run_log.write()
        text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        _log(f"{name} step {trainer.step}/{total} {text} ({entry['seconds']:.0f} s)")


def train_vqgan_stage(
    out: Path, training: vqgan_training.VQGANTraining, device: torch.device, save_every: int
) -> None:
    checkpoint = out / VQGAN_CHECKPOINT_FILE
    if checkpoint.exists():
        _log(f"vqgan: {checkpoint} exists, stage skipped")
        return
    run_log = RunLog(out / LOG_FILE)
    entry = run_log.stage("vqgan")
    entry["settings"] = {**training.__dict__, "device": device.type}
    trainer = vqgan_training.VQGANTrainer(training, device)
    _train_resumably("vqgan", trainer, training.total_steps, out, run_log, save_every)
    model = vqgan_training.scale_latent(trainer.model.eval(), training.latent_scale)
    if training.final_codes:
        model = vqgan_training.densify_codebook(
            model, training.final_codes, training.seed, training.densify_pictures
        )
    count = training.eval_pictures
    entry["psnr_train_combos"] = vqgan_training.evaluate_psnr(model, training.seed, False, count)
    entry["psnr_held_out_combos"] = vqgan_training.evaluate_psnr(model, training.seed, True, count)
    entry["codes_restarted"] = trainer.restarted
    entry["parameters"] = sum(p.numel() for p in model.parameters())
    _write_text(vqgan_training.config_yaml(model.config), out / VQGAN_CONFIG_FILE)
    _save(vqgan_training.lightning_checkpoint(model, trainer.step), checkpoint)
    run_log.write()
    _log(f"vqgan: done, {entry['psnr_held_out_combos']} on held-out combinations")


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _measure_clip(
    entry: dict[str, Any], model: torch.nn.Module, seed: int, device: torch.device, count: int
) -> None:
    """A CLIP stage's figures into its log entry: zero-shot and linear shape accuracy, size."""
    entry["zero_shot"] = clip_training.evaluate_zero_shot(model, seed, device, count)
    entry["linear_shape"] = clip_shapes.linear_shape_accuracy(model, seed, device, count)
    entry["parameters"] = sum(p.numel() for p in model.parameters())


def train_clip_stage(out: Path, training: Any, device: torch.device, save_every: int) -> None:
    """The base CLIP: contrastive training on drawings; writes DIR/clip_base.pt."""
    weights = out / CLIP_BASE_WEIGHTS_FILE
    if weights.exists():
        _log(f"clip: {weights} exists, stage skipped")
        return
    run_log = RunLog(out / LOG_FILE)
    entry = run_log.stage("clip")
    entry["settings"] = {**training.__dict__, "device": device.type}
    trainer = clip_training.ClipTrainer(training, device)
    _train_resumably("clip", trainer, training.total_steps, out, run_log, save_every)
    model = trainer.model.eval()
    _measure_clip(entry, model, training.seed, device, training.eval_pictures)
    _save(_weights(model), weights)
    run_log.write()
    _log(f"clip: done, zero-shot {entry['zero_shot']}")


def train_clip_shapes_stage(
    out: Path, training: clip_shapes.ShapeTraining, device: torch.device, save_every: int
) -> None:
    """The shape stage: continues DIR/clip_base.pt with the VQGAN in DIR; writes the CLIP."""
    weights = out / CLIP_WEIGHTS_FILE
    if weights.exists():
        _log(f"clip_shapes: {weights} exists, stage skipped")
        return
    base = torch.load(out / CLIP_BASE_WEIGHTS_FILE, map_location=device, weights_only=True)
    vqgan = load_vqgan(out / VQGAN_CONFIG_FILE, out / VQGAN_CHECKPOINT_FILE, device)
    run_log = RunLog(out / LOG_FILE)
    entry = run_log.stage("clip_shapes")
    entry["settings"] = {**training.__dict__, "device": device.type}
    trainer = clip_shapes.ShapeClipTrainer(training, base, vqgan, device)
    _train_resumably("clip_shapes", trainer, training.total_steps, out, run_log, save_every)
    model = trainer.model.eval()
    _measure_clip(entry, model, training.seed, device, training.eval_pictures)
    _write_text(json.dumps(clip_training.DEMO_CLIP_CONFIG, indent=2) + "\n", out / CLIP_CONFIG_FILE)
    _save(_weights(model), weights)
    run_log.write()
    _log(f"clip_shapes: done, zero-shot {entry['zero_shot']}")


def main(argv: list[str] | None = None) -> int:
    # The defaults are the recipe of the shipped weights (docs/demo-models.md).
    parser = argparse.ArgumentParser(
        prog="python -m artgen.training.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the model files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=("vqgan", "clip", "clip-shapes", "all"), default="all")
    parser.add_argument("--vqgan-steps", type=int, default=vqgan_training.VQGANTraining.steps)
    parser.add_argument("--vqgan-full-steps", type=int, default=800)
    parser.add_argument("--vqgan-full-lr", type=float, default=vqgan_training.VQGANTraining.full_lr)
    parser.add_argument("--vqgan-polish-steps", type=int, default=800)
    parser.add_argument("--vqgan-latent-scale", type=float, default=DEMO_LATENT_SCALE)
    parser.add_argument("--vqgan-final-codes", type=int, default=DEMO_FINAL_CODES)
    parser.add_argument("--clip-steps", type=int, default=clip_training.ClipTraining.steps)
    parser.add_argument("--clip-extra-steps", type=int, default=1200)
    parser.add_argument("--clip-shape-steps", type=int, default=clip_shapes.ShapeTraining.steps)
    parser.add_argument("--save-every", type=int, default=100, help="steps between saves")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage in ("vqgan", "all"):
        training = vqgan_training.VQGANTraining(
            steps=args.vqgan_steps,
            full_steps=args.vqgan_full_steps,
            full_lr=args.vqgan_full_lr,
            polish_steps=args.vqgan_polish_steps,
            latent_scale=args.vqgan_latent_scale,
            final_codes=args.vqgan_final_codes,
            seed=args.seed,
        )
        train_vqgan_stage(args.out, training, device, args.save_every)
    if args.stage in ("clip", "all"):
        clip_settings = clip_training.ClipTraining(
            steps=args.clip_steps, extra_steps=args.clip_extra_steps, seed=args.seed
        )
        train_clip_stage(args.out, clip_settings, device, args.save_every)
    if args.stage in ("clip-shapes", "all"):
        shape_settings = clip_shapes.ShapeTraining(steps=args.clip_shape_steps, seed=args.seed)
        train_clip_shapes_stage(args.out, shape_settings, device, args.save_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
