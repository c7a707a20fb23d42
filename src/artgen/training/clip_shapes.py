"""The demo CLIP's last stage: teach the image tower shapes apart from colours and from blobs.

Measured on the base weights (contrastive training alone): a linear read-out of the shape from
the image embedding scored 76% on fresh drawings and 48% on the held-out combinations, and a
drawn red square scored a cosine of 0.18 against its prompt where a red blob at the same place
scored 0.15. Generation follows that critic's gradient from random VQGAN codes, so it painted the
colours as blobs and collages. This stage continues from the base weights with:

- a supervised head on the image embedding naming the shape, colour, background, position and
  size, where the shape has a fifth class, "no shape", for blobs (`shapes.draw_blob`: a lump or a
  scatter of lumps in the right colours) and for decodes of random VQGAN codes (where every
  generation starts); supervision teaches a small conv tower shapes in far fewer steps than
  contrast does;
- the same contrastive loss as the base stage, where blobs and random decodes are extra
  pictures each caption must beat (a blob is no negative of a caption naming only colours);
- a share of the pictures passed through the trained VQGAN (encode, snap, decode) before the
  cutout augmentations, so the critic knows the decoder's rendering;
- optionally (`epsilon` > 0) an FGSM attack on the pictures before each step (adversarial
  training: gradients that look more like what they point to, at about three times the cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from artgen.models.vqgan import VQGAN
from artgen.training import clip as clip_training
from artgen.training import shapes
from artgen.training.data import step_rng, to_tensor

STEP_OFFSET = 1_000_000  # this stage's batches are drawn apart from the base stage's
NO_SHAPE = len(shapes.SHAPES)  # the head's shape class for blobs and random decodes
# The head's outputs: shape (+ no shape), colour, background, position, size.
HEAD_SPLIT = (len(shapes.SHAPES) + 1, len(shapes.COLOURS), len(shapes.COLOURS), 5, 2)


@dataclass(frozen=True)
class ShapeTraining:
    """Hyper-parameters of the shape stage (it starts from the base stage's weights)."""

    steps: int = 1200
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    seed: int = 0
    reconstructed_fraction: float = 0.25  # pictures passed through the VQGAN first
    recolour_fraction: float = 0.35  # channel-permuted, shape-only captions (as the base stage)
    blobs: int = 16  # blob pictures per step
    random_decodes: int = 4  # decodes of random codes per step
    head_weight: float = 1.0  # weight of the supervised head's cross-entropies
    epsilon: float = 0.0  # L-inf radius of an FGSM attack; 0: none
    eval_pictures: int = 256

    @property
    def total_steps(self) -> int:
        return self.steps


def learning_rate(training: ShapeTraining, step: int) -> float:
    warmup = 50
    if step < warmup:
        return training.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, training.steps - warmup)
    return training.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _labels(scenes: list[shapes.Scene], shape: list[int]) -> Tensor:
    """(B, 5) head labels: shape (or NO_SHAPE), colour, background, position, size."""
    colours = list(shapes.COLOURS)
    return torch.tensor(
        [
            [
                shape_index,
                colours.index(scene.colour),
                colours.index(scene.background),
                shapes.POSITIONS.index(scene.position),
                shapes.SIZES.index(scene.size),
            ]
            for scene, shape_index in zip(scenes, shape, strict=True)
        ]
    )


class ShapeClipTrainer:
    """The base CLIP trained on, with a fresh supervised head; the VQGAN only renders pictures."""

    def __init__(
        self,
        training: ShapeTraining,
        base_weights: dict[str, Tensor],
        vqgan: VQGAN,
        device: torch.device | str = "cpu",
    ) -> None:
        """`base_weights`: the base stage's CLIP state dict."""
        self.training = training
        self.device = torch.device(device)
        self.batches = clip_training.ClipTraining(
            steps=STEP_OFFSET + training.steps,
            batch_size=training.batch_size,
            seed=training.seed,
            recolour_from=0,
            recolour_fraction=training.recolour_fraction,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(training.seed + 1)
            self.model = clip_training.build_clip().to(self.device).train()
            embed = clip_training.DEMO_CLIP_CONFIG["embed_dim"]
            self.head = torch.nn.Linear(embed, sum(HEAD_SPLIT)).to(self.device)
        self.model.load_state_dict(base_weights)
        self.tokenize = clip_training.tokenizer()
        self.vqgan = vqgan.to(self.device).eval().requires_grad_(False)
        self.codebook = self.vqgan.codebook.detach()
        self.optimizer = clip_training.clip_optimizer(
            self.model, self.head, training.lr, training.weight_decay
        )
        self.step = 0

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])

    @torch.no_grad()
    def reconstruct(self, pictures: Tensor, generator: torch.Generator) -> Tensor:
        """Pass a random `reconstructed_fraction` of pictures (B, 3, S, S) through the VQGAN."""
        fraction = self.training.reconstructed_fraction
        chosen = torch.rand(len(pictures), generator=generator) < fraction
        if not chosen.any():
            return pictures
        index = chosen.nonzero().flatten().to(pictures.device)
        rendered = self.vqgan(pictures[index] * 2 - 1)  # encode, snap to the codebook, decode
        rendered = rendered.add(1).div(2).clamp(0, 1)
        return pictures.index_copy(0, index, rendered)

    @torch.no_grad()
    def random_decodes(self, count: int, generator: torch.Generator) -> Tensor:
        """Decodes (count, 3, S, S) of random code grids: where every generation starts."""
        tokens = self.batches.side // self.vqgan.factor
        codes = torch.randint(len(self.codebook), (count, tokens, tokens), generator=generator)
        latent = self.codebook[codes.to(self.device)].permute(0, 3, 1, 2)
        return self.vqgan.decode(latent).add(1).div(2).clamp(0, 1)

    def negatives(self, step: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augmented negatives (N, 3, S, S), blobs first then random decodes, and their head
        labels (N, 5): no shape; a blob's colours and place, -100 (unknown) for a decode."""
        rng = step_rng(self.training.seed, step, "clip-shapes-negatives")
        scenes = [shapes.random_scene(rng) for _ in range(self.training.blobs)]
        blobs = to_tensor(
            [shapes.draw_blob(scene, self.batches.side, rng) for scene in scenes], self.device
        )
        blobs = self.reconstruct(blobs, generator)
        decodes = self.random_decodes(self.training.random_decodes, generator)
        images, flips = clip_training.augment(torch.cat([blobs, decodes]), generator)
        labels = _labels(scenes, [NO_SHAPE] * len(scenes))
        labels[flips[: len(scenes)], 3] = -100  # a flip moves the blob: position unknown
        unknown = torch.full((len(decodes), 5), -100)
        unknown[:, 0] = NO_SHAPE
        return images, torch.cat([labels, unknown]).to(self.device)

    def losses(
        self,
        images: Tensor,
        text_features: Tensor,
        batch: clip_training.ClipBatch,
        labels: Tensor,
        blob_count: int,
    ) -> dict[str, Tensor]:
        """Image -> text and text -> image (negatives included) contrast, and the head's loss.
        `images`: the batch's pictures (B), then the negatives (N); `labels`: (B + N, 5)."""
        count = len(batch.targets)
        features = F.normalize(self.model.encode_image(clip_training.normalise(images)), dim=-1)
        scale = self.model.logit_scale.exp().clamp(max=100)
        logits = scale * features @ text_features.T  # (B + N, 2B)
        image_loss = -(batch.targets * logits[:count].log_softmax(1)).sum(1).mean()
        # Text -> image over the batch's pictures and the negatives; a blob is no negative of a
        # caption that does not name the shape ("red on blue" is true of it).
        caption_logits = logits[:, :count].T  # (B, B + N)
        names_shape = torch.tensor(["shape" in named for named in batch.facts], device=self.device)
        blob_columns = torch.zeros(caption_logits.shape[1], dtype=torch.bool, device=self.device)
        blob_columns[count : count + blob_count] = True
        hidden = ~names_shape[:, None] & blob_columns[None, :]
        text_targets = batch.targets[:, :count].T
        text_targets = text_targets / text_targets.sum(1, keepdim=True)
        text_targets = F.pad(text_targets, (0, caption_logits.shape[1] - count))
        log_probs = caption_logits.masked_fill(hidden, float("-inf")).log_softmax(1)
        text_loss = -(text_targets * log_probs.masked_fill(hidden, 0.0)).sum(1).mean()
        parts = self.head(features * 10).split(HEAD_SPLIT, dim=1)
        head_loss = sum(
            (F.cross_entropy(part, labels[:, index]) for index, part in enumerate(parts)),
            torch.zeros((), device=self.device),
        )
        return {"image_loss": image_loss, "text_loss": text_loss, "head_loss": head_loss}

    def _attack(
        self,
        images: Tensor,
        text_features: Tensor,
        batch: clip_training.ClipBatch,
        labels: Tensor,
        blob_count: int,
        generator: torch.Generator,
    ) -> Tensor:
        """FGSM with a random start: the pictures moved within `epsilon` to raise the loss."""
        epsilon = self.training.epsilon
        start = (torch.rand(images.shape, generator=generator) * 2 - 1).to(self.device) * epsilon
        moved = (images + start).clamp(0, 1).requires_grad_(True)
        losses = self.losses(moved, text_features.detach(), batch, labels, blob_count)
        (gradient,) = torch.autograd.grad(sum(losses.values()), moved)
        moved = moved.detach() + 1.25 * epsilon * gradient.sign()
        return torch.minimum(torch.maximum(moved, images - epsilon), images + epsilon).clamp(0, 1)

    def train_step(self) -> dict[str, float]:
        step = STEP_OFFSET + self.step
        rng = step_rng(self.training.seed, step, "clip-shapes")
        generator = torch.Generator().manual_seed(rng.getrandbits(63))
        batch = clip_training.draw_batch(
            self.batches, step, self.device, lambda pictures: self.reconstruct(pictures, generator)
        )
        negatives, negative_labels = self.negatives(step, generator)
        images = torch.cat([batch.images, negatives])
        # The batch's recoloured pictures have unknown colours (-100 from draw_batch).
        picture_labels = _labels(
            batch.scenes, [shapes.SHAPES.index(s.shape) for s in batch.scenes]
        ).to(self.device)
        picture_labels[:, 1:3] = batch.labels[:, 1:3]
        labels = torch.cat([picture_labels, negative_labels])
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.training, self.step)
        text_features = F.normalize(
            self.model.encode_text(self.tokenize(batch.texts).to(self.device)), dim=-1
        )
        if self.training.epsilon > 0:
            images = self._attack(
                images, text_features, batch, labels, self.training.blobs, generator
            )
        losses = self.losses(images, text_features, batch, labels, self.training.blobs)
        loss = (
            losses["image_loss"] + losses["text_loss"]
        ) / 2 + self.training.head_weight * losses["head_loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {name: float(value.detach()) for name, value in losses.items()}


@torch.no_grad()
def linear_shape_accuracy(
    model: torch.nn.Module, seed: int, device: torch.device | str = "cpu", count: int = 256
) -> dict[str, float]:
    """How well a linear read-out of the image embedding names the shape: fit on 4x`count`
    fresh drawings (training combinations), scored on `count` more and on the held-out ones."""
    was_training = model.training
    model.eval()

    def embedded(number: int, stream: str, held_out: bool) -> tuple[Tensor, Tensor]:
        rng = step_rng(seed, 0, stream)
        scenes = [shapes.random_scene(rng, held_out=held_out) for _ in range(number)]
        images = to_tensor([shapes.draw(scene, 64, rng) for scene in scenes], device)
        features = F.normalize(model.encode_image(clip_training.normalise(images)), dim=-1)
        return features, torch.tensor([shapes.SHAPES.index(s.shape) for s in scenes], device=device)

    fit_x, fit_y = embedded(4 * count, "linear-fit", False)
    weights = torch.zeros(fit_x.shape[1], len(shapes.SHAPES), device=device, requires_grad=True)
    bias = torch.zeros(len(shapes.SHAPES), device=device, requires_grad=True)
    optimizer = torch.optim.Adam([weights, bias], lr=0.05)
    with torch.enable_grad():
        for _ in range(300):
            loss = F.cross_entropy(fit_x @ weights * 10 + bias, fit_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    results = {}
    for name, held_out in (("train_combos", False), ("held_out_combos", True)):
        x, y = embedded(count, f"linear-{name}", held_out)
        results[name] = round(float(((x @ weights * 10 + bias).argmax(1) == y).float().mean()), 3)
    model.train(was_training)
    return results
