"""Training our taming-layout VQGAN on procedural pictures: L1 + MSE + codebook/commitment losses.

The codebook is initialised by k-means on encoder outputs after a short autoencoder warm-up, and
codes unused for a while are restarted from current encoder outputs (both keep every code alive).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from artgen.models.quantizers import VectorQuantizer, nearest_codes
from artgen.models.vqgan import VQGAN, VQGANConfig
from artgen.training.data import scene_batch, step_rng

# f8: a 64x64 picture is an 8x8 grid of codes; GroupNorm(32) needs channels in multiples of 32.
DEMO_VQGAN_CONFIG = VQGANConfig(
    ch=32,
    out_ch=3,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=1,
    attn_resolutions=(),
    in_channels=3,
    resolution=64,
    z_channels=32,
    n_embed=512,
    embed_dim=32,
)


@dataclass(frozen=True)
class VQGANTraining:
    """Hyper-parameters of one VQGAN training run."""

    steps: int = 1000  # on crops
    batch_size: int = 16
    side: int = 64
    # Random crops (aligned to the 8 px code grid) of the side x side pictures: the same patches
    # at a quarter of the cost per step; the model is convolutional, so it runs at any size.
    crop: int = 32
    lr: float = 1e-3
    final_lr_fraction: float = 0.1  # cosine decay to this fraction of lr
    autoencoder_steps: int = 150  # no quantisation yet: gives k-means something to cluster
    kmeans_batches: int = 8
    beta: float = 0.25  # commitment weight (taming's)
    restart_every: int = 100  # steps between restarts of unused codes
    seed: int = 0
    eval_pictures: int = 256  # fresh pictures per PSNR figure
    # Then whole pictures (never a crop of flat background, which GroupNorm turns to zeros), at a
    # lower learning rate decaying again: what the decoder meets when it paints.
    full_steps: int = 0
    full_batch_size: int = 4
    full_lr: float = 3e-4
    # Last, a polish on larger batches of whole pictures at a lower learning rate.
    polish_steps: int = 0
    polish_batch_size: int = 8
    polish_lr: float = 1e-4
    # Last, the latent space is scaled by this factor (`scale_latent`): the same model, with a
    # codebook spaced for the seed's step size (docs/demo-models.md).
    latent_scale: float = 1.0
    # After that, the codebook is replaced by this many k-means centres of the encoder's outputs
    # on `densify_pictures` fresh whole pictures (`densify_codebook`; 0 keeps the trained one):
    # codes closer together, so a small optimiser step can reach a neighbouring code.
    final_codes: int = 0
    densify_pictures: int = 1536

    @property
    def total_steps(self) -> int:
        return self.steps + self.full_steps + self.polish_steps


def config_yaml(config: VQGANConfig) -> str:
    """The taming-format YAML for a config, as real checkpoints ship it."""
    ddconfig = {
        "double_z": config.double_z,
        "z_channels": config.z_channels,
        "resolution": config.resolution,
        "in_channels": config.in_channels,
        "out_ch": config.out_ch,
        "ch": config.ch,
        "ch_mult": list(config.ch_mult),
        "num_res_blocks": config.num_res_blocks,
        "attn_resolutions": list(config.attn_resolutions),
        "dropout": config.dropout,
    }
    document = {
        "model": {
            "base_learning_rate": 4.5e-6,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": config.embed_dim,
                "n_embed": config.n_embed,
                "ddconfig": ddconfig,
                "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"},
            },
        }
    }
    header = "# artgen demo VQGAN, trained by `python -m artgen.training.demo` (taming layout)\n"
    return header + yaml.safe_dump(document, sort_keys=False)


@torch.no_grad()
def scale_latent(model: VQGAN, factor: float) -> VQGAN:
    """The same VQGAN with its latent space (codebook, encoder output) multiplied by `factor`.

    Snapping, clamping to the codebook's range and random codes all scale along, and decode
    divides it out again, so every picture stays the same; what changes is how far one
    optimiser step of a given size moves z relative to the codes' spacing: the engine's Adam at
    step size lr on the scaled model moves as lr / factor would on the original."""
    model.quantize.embedding.weight.mul_(factor)
    model.quant_conv.weight.mul_(factor)
    model.quant_conv.bias.mul_(factor)
    model.post_quant_conv.weight.div_(factor)
    return model


@torch.no_grad()
def densify_codebook(
    model: VQGAN, codes: int, seed: int, pictures: int = 1536, side: int = 64
) -> VQGAN:
    """The same VQGAN with a codebook of `codes` k-means centres of its encoder's outputs on
    `pictures` fresh whole pictures (drawn from `seed`), instead of the trained codebook.

    More codes in the same region lie closer together (the demo's 512 trained codes are 0.6
    apart at their nearest, unscaled, about their per-dimension spread of 0.67; 4096 centres
    halve that), so a small optimiser step reaches a neighbouring code. The decoder is not
    retrained: the centres sit among the encoder's outputs, and the reconstructions do not get
    worse. The shipped demo VQGAN does not use it (it painted no better, docs/demo-models.md)."""
    device = next(model.parameters()).device
    batches = [
        scene_batch(step_rng(seed, index, "vqgan-densify"), 64, side)[1]
        for index in range(max(1, pictures // 64))
    ]
    points = torch.cat([flat_latents(model, images.to(device)).cpu() for images in batches])
    centres = kmeans(points, codes, torch.Generator().manual_seed(seed), rounds=15)
    trainable = model.codebook.requires_grad
    model.config = dataclasses.replace(model.config, n_embed=codes)
    model.quantize = VectorQuantizer(codes, model.config.embed_dim).to(device)
    model.quantize.codebook.copy_(centres.to(device))
    model.quantize.requires_grad_(trainable)
    return model


def lightning_checkpoint(model: VQGAN, step: int) -> dict[str, Any]:
    """What a taming Lightning `.ckpt` holds that a loader reads: `state_dict` and counters."""
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return {"state_dict": state, "global_step": step, "epoch": 0}


def learning_rate(training: VQGANTraining, step: int) -> float:
    low = training.final_lr_fraction
    polish_from = training.steps + training.full_steps
    if step >= polish_from:
        progress = (step - polish_from) / max(1, training.polish_steps)
        return training.polish_lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress)))
    if step >= training.steps:
        progress = (step - training.steps) / max(1, training.full_steps)
        low = training.final_lr_fraction
        return training.full_lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress)))
    warmup = 50
    if step < warmup:
        return training.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, training.steps - warmup)
    low = training.final_lr_fraction
    return training.lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress)))


def psnr(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Per-picture PSNR in dB of images in [0, 1]: (B, 3, H, W) x 2 -> (B,)."""
    mse = (reconstruction.clamp(0, 1) - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def flat_latents(model: VQGAN, images: Tensor) -> Tensor:
    """Encoder outputs (B, D, h, w) -> (B*h*w, D)."""
    z = model.quant_conv(model.encoder(images * 2 - 1))
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def kmeans(points: Tensor, count: int, generator: torch.Generator, rounds: int = 10) -> Tensor:
    """`count` centres of `points` (N, D) by Lloyd's algorithm from a random start (an empty
    cluster keeps its centre)."""
    if len(points) >= count:
        centres = points[torch.randperm(len(points), generator=generator)[:count]].clone()
    else:  # fewer points than codes (tiny runs): repeat them, slightly apart
        picks = torch.randint(len(points), (count,), generator=generator)
        centres = points[picks] + torch.randn(count, points.shape[1], generator=generator) * 1e-3
    for _ in range(rounds):
        assignment = torch.cat(  # (N,), in chunks: N x count distances would not fit
            [torch.cdist(chunk, centres).argmin(1) for chunk in points.split(8192)]
        )
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=count).float()[:, None]
        empty = counts[:, 0] == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1))
    return centres


class VQGANTrainer:
    """The model, optimiser and counters of one run; `state()` / `load()` make it resumable."""

    def __init__(self, training: VQGANTraining, device: torch.device | str = "cpu") -> None:
        self.training = training
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(training.seed)
            self.model = VQGAN(DEMO_VQGAN_CONFIG).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=training.lr, betas=(0.5, 0.9))
        self.step = 0
        self.usage = torch.zeros(DEMO_VQGAN_CONFIG.n_embed, device=self.device)
        self.restarted = 0

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "usage": self.usage,
            "restarted": self.restarted,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.usage = state["usage"].to(self.device)
        self.restarted = int(state["restarted"])

    def _batch(self, step: int) -> Tensor:
        training = self.training
        if step >= training.steps + training.full_steps:
            rng = step_rng(training.seed, step, "vqgan-polish")
            _, images = scene_batch(rng, training.polish_batch_size, training.side)
            return images.to(self.device)
        if step >= training.steps:
            rng = step_rng(training.seed, step, "vqgan-full")
            _, images = scene_batch(rng, training.full_batch_size, training.side)
            return images.to(self.device)
        rng = step_rng(training.seed, step, "vqgan")
        _, images = scene_batch(rng, training.batch_size, training.side)
        factor = DEMO_VQGAN_CONFIG.factor
        places = range(0, training.side - training.crop + 1, factor)
        crops = []
        for image in images:
            x, y = rng.choice(places), rng.choice(places)
            crops.append(image[:, y : y + training.crop, x : x + training.crop])
        return torch.stack(crops).to(self.device)  # (B, 3, crop, crop) in [0, 1]

    @torch.no_grad()
    def _init_codebook(self) -> None:
        points = torch.cat(
            [
                flat_latents(self.model, self._batch(-1 - i))
                for i in range(self.training.kmeans_batches)
            ]
        )
        generator = torch.Generator().manual_seed(self.training.seed)
        centres = kmeans(points.cpu(), DEMO_VQGAN_CONFIG.n_embed, generator)
        self.model.quantize.codebook.copy_(centres.to(self.device))

    @torch.no_grad()
    def _restart_unused(self, latents: Tensor) -> None:
        unused = (self.usage == 0).nonzero()[:, 0]
        if len(unused):
            generator = torch.Generator().manual_seed(self.training.seed * 7919 + self.step)
            picks = torch.randint(len(latents), (len(unused),), generator=generator)
            noise = torch.randn(len(unused), latents.shape[1], generator=generator) * 0.01
            codebook = self.model.quantize.codebook
            codebook[unused] = latents[picks.to(latents.device)] + noise.to(latents.device)
            self.restarted += len(unused)
        self.usage.zero_()

    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns its losses."""
        training = self.training
        if self.step == training.autoencoder_steps:
            self._init_codebook()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(training, self.step)
        images = self._batch(self.step)  # (B, 3, S, S) in [0, 1]
        target = images * 2 - 1
        z = self.model.quant_conv(self.model.encoder(target))  # (B, D, h, w)
        losses: dict[str, Tensor] = {}
        if self.step < training.autoencoder_steps:
            z_q = z
        else:
            codebook = self.model.quantize.codebook
            indices = nearest_codes(z.detach(), codebook)  # (B, h, w)
            chosen = F.embedding(indices, codebook).permute(0, 3, 1, 2)  # (B, D, h, w)
            losses["codebook"] = F.mse_loss(chosen, z.detach())
            losses["commitment"] = training.beta * F.mse_loss(z, chosen.detach())
            z_q = z + (chosen - z).detach()
            self.usage += torch.bincount(indices.flatten(), minlength=len(codebook)).float()
        reconstruction = self.model.decode(z_q)  # (B, 3, S, S) in about [-1, 1]
        losses["l1"] = (reconstruction - target).abs().mean()
        losses["mse"] = (reconstruction - target).pow(2).mean()
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        after_init = self.step - training.autoencoder_steps
        if after_init > 0 and after_init % training.restart_every == 0:
            self._restart_unused(z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
        return {name: float(value.detach()) for name, value in losses.items()}

    def run(self, log: Callable[[str], None] | None = None, every: int = 100) -> None:
        """Train to `training.total_steps`, calling `log` every `every` steps."""
        total = self.training.total_steps
        while self.step < total:
            losses = self.train_step()
            if log is not None and (self.step % every == 0 or self.step == total):
                text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
                log(f"vqgan step {self.step}/{total} {text}")


@torch.no_grad()
def evaluate_psnr(
    model: VQGAN, seed: int, held_out: bool, count: int = 256, side: int = 64
) -> dict[str, float]:
    """Mean and 10th-percentile PSNR (dB) of reconstructions of fresh pictures."""
    was_training = model.training
    model.eval()
    rng = step_rng(seed, 0, "vqgan-eval-held-out" if held_out else "vqgan-eval-train")
    device = next(model.parameters()).device
    values = []
    for start in range(0, count, 32):
        _, images = scene_batch(rng, min(32, count - start), side, held_out=held_out)
        images = images.to(device)
        reconstruction = (model(images * 2 - 1) + 1) / 2
        values.append(psnr(reconstruction, images).cpu())
    model.train(was_training)
    scores = torch.cat(values)
    return {
        "psnr_mean_db": round(float(scores.mean()), 2),
        "psnr_p10_db": round(float(scores.quantile(0.1)), 2),
        "pictures": count,
    }
