"""Contrastive training of a small open_clip CLIP on procedural pictures and their captions.

Three things give the shape enough signal (a plain in-batch loss learns colours first and shapes
barely): every picture also meets a hard negative caption that differs from its own only in the
shape; captions that name only some fields count every picture they are true of as a positive
(soft targets) instead of as a false negative; pictures go through the engine's own cutouts (flips,
rotation, perspective with black wedges, noise) so the critic sees what generation shows it.
A linear probe on the image embedding that names shape, colour and background (trained with it,
not saved) pushes the image tower to keep the shape, which contrast alone learned very slowly.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor

from artgen.engine.cutout_params import sample_cutout_params
from artgen.models.clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from artgen.training import shapes
from artgen.training.data import step_rng, to_tensor

# A conv tower (open_clip's ModifiedResNet) learns shapes from few steps far better than a tiny
# ViT; the text tower is small but keeps CLIP's BPE vocabulary, so any prompt tokenizes.
DEMO_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "image_size": 64},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}
COMBO_FACTS = frozenset({"shape", "colour", "background"})  # what `prompt_for` names
FLIPPED = {
    "center": "center",
    "top left": "top right",
    "top right": "top left",
    "bottom left": "bottom right",
    "bottom right": "bottom left",
}


@dataclass(frozen=True)
class ClipTraining:
    """Hyper-parameters of one CLIP training run."""

    steps: int = 1000
    batch_size: int = 64
    side: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    eval_pictures: int = 256  # clean pictures per zero-shot figure
    probe_weight: float = 1.0  # weight of the shape/colour/background probe's cross-entropy
    # From this step on, this fraction of pictures has its RGB channels permuted and a caption
    # naming only the shape: colours are learned first, then the shape apart from any colour.
    recolour_from: int = 400
    recolour_fraction: float = 0.35
    # Then more steps at a lower learning rate (a second cosine), recolouring more pictures.
    extra_steps: int = 0
    extra_lr: float = 5e-4
    extra_recolour_fraction: float = 0.5

    @property
    def total_steps(self) -> int:
        return self.steps + self.extra_steps


def build_clip(config: dict[str, Any] = DEMO_CLIP_CONFIG) -> torch.nn.Module:
    """open_clip's CLIP with the given config (default initialisation)."""
    return open_clip.model.CLIP(
        embed_dim=config["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**config["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**config["text_cfg"]),
    )


def tokenizer(config: dict[str, Any] = DEMO_CLIP_CONFIG):
    """The bundled BPE tokenizer at the config's context length."""
    return open_clip.get_tokenizer("ViT-B-32", context_length=config["text_cfg"]["context_length"])


def normalise(images: Tensor) -> Tensor:
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _swapped_shape(scene: shapes.Scene, rng: random.Random) -> shapes.Scene:
    other = rng.choice([shape for shape in shapes.SHAPES if shape != scene.shape])
    return dataclasses.replace(scene, shape=other)


def _warp(images: Tensor, matrices: Tensor, padding_mode: str) -> Tensor:
    """Warp (B, 3, S, S) by per-picture output -> input maps (B, 3, 3) in [-1, 1] coordinates."""
    count, _, size, _ = images.shape
    line = torch.linspace(-1, 1, size, device=images.device)
    grid_y, grid_x = torch.meshgrid(line, line, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).view(1, -1, 3)
    mapped = points @ matrices.transpose(1, 2)  # (B, S*S, 3)
    grid = (mapped[..., :2] / mapped[..., 2:]).view(count, size, size, 2)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True
    )


def augment(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The engine's cutout augmentations drawn from its own distributions, one per picture:
    flips, rotation/shift (edges repeated), perspective (black wedges) and noise, batched.
    Returns the pictures (B, 3, S, S) and which were flipped (B,)."""
    count, _, size, _ = images.shape
    params = sample_cutout_params((size, size), count, size, 1.0, True, generator)
    flips = params.flips.to(images.device)
    images = torch.where(flips[:, None, None, None], images.flip(3), images)
    images = _warp(images, params.affines.to(images.device), "border")
    images = _warp(images, params.perspectives.to(images.device), "zeros")
    return (images + params.noise.to(images.device)).clamp(0, 1), flips.cpu()


def scene_labels(scenes: list[shapes.Scene]) -> Tensor:
    """(B, 3) indices of shape, colour and background."""
    colours = list(shapes.COLOURS)
    return torch.tensor(
        [
            [shapes.SHAPES.index(s.shape), colours.index(s.colour), colours.index(s.background)]
            for s in scenes
        ]
    )


def _shape_caption(shape: str, rng: random.Random) -> str:
    word = rng.choice(shapes.SHAPE_WORDS[shape])
    return rng.choice((f"a {word}", f"a picture of a {word}"))


def _recolour(
    training: ClipTraining,
    step: int,
    images: Tensor,
    scenes: list[shapes.Scene],
    texts: list[str],
    facts: list[frozenset[str]],
    negative_texts: list[str],
) -> set[int]:
    """Permute the channels of some pictures in place and give them shape-only captions (and
    shape-only hard negatives); returns their indices. Draws from its own stream."""
    if step < training.recolour_from:
        return set()
    rng = step_rng(training.seed, step, "clip-recolour")
    orders = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    fraction = training.recolour_fraction
    if step >= training.steps:
        fraction = training.extra_recolour_fraction
    chosen = set()
    for i, scene in enumerate(scenes):
        if rng.random() >= fraction:
            continue
        images[i] = images[i, list(rng.choice(orders))]
        texts[i] = _shape_caption(scene.shape, rng)
        facts[i] = frozenset({"shape"})
        negative_texts[i] = _shape_caption(_swapped_shape(scene, rng).shape, rng)
        chosen.add(i)
    return chosen


@dataclass
class ClipBatch:
    """One step's training data: augmented pictures, captions then hard negatives, targets."""

    images: Tensor  # (B, 3, S, S), augmented
    texts: list[str]  # 2B: the captions, then the hard negatives
    targets: Tensor  # (B, 2B): each picture's target distribution over the texts
    labels: Tensor  # (B, 3): shape, colour, background (-100 where unknown)
    facts: list[frozenset[str]]  # (B,): the Scene fields each caption names
    scenes: list[shapes.Scene]  # (B,): what each picture shows (positions as augmented)


def draw_batch(
    training: ClipTraining,
    step: int,
    device: torch.device,
    prepare: Callable[[Tensor], Tensor] | None = None,
) -> ClipBatch:
    """The step's batch; `prepare` maps the clean pictures (B, 3, S, S) in [0, 1] before they
    are augmented (the shape stage passes some through the VQGAN)."""
    rng = step_rng(training.seed, step, "clip")
    generator = torch.Generator().manual_seed(rng.getrandbits(63))
    scenes = [shapes.random_scene(rng) for _ in range(training.batch_size)]
    pictures = to_tensor([shapes.draw(scene, training.side, rng) for scene in scenes], device)
    if prepare is not None:
        pictures = prepare(pictures)
    images, flips = augment(pictures, generator)
    # A flipped picture's caption names the mirrored position.
    scenes = [
        dataclasses.replace(scene, position=FLIPPED[scene.position]) if flipped else scene
        for scene, flipped in zip(scenes, flips.tolist(), strict=True)
    ]
    texts, facts = [], []
    for scene in scenes:
        text, named = shapes.caption_with_facts(scene, rng)
        texts.append(text)
        facts.append(named)
    negatives = [_swapped_shape(scene, rng) for scene in scenes]
    negative_texts = [shapes.prompt_for(scene) for scene in negatives]
    negative_facts = [COMBO_FACTS] * len(negatives)
    recoloured = _recolour(training, step, images, scenes, texts, facts, negative_texts)
    for i in recoloured:
        negative_facts[i] = frozenset({"shape"})
    count = training.batch_size
    # A text is a positive of every picture it is true of, hard negatives included; a recoloured
    # picture only of texts that name none of its colours.
    described = [*zip(scenes, facts, strict=True), *zip(negatives, negative_facts, strict=True)]
    positives = torch.zeros(count, 2 * count)
    for i, scene in enumerate(scenes):
        for j, (other, named) in enumerate(described):
            if i in recoloured and named & {"colour", "background"}:
                continue
            positives[i, j] = float(shapes.agrees(scene, other, named))
    targets = positives / positives.sum(1, keepdim=True)
    labels = scene_labels(scenes)
    for i in recoloured:
        labels[i, 1:] = -100  # the probe's cross-entropy ignores unknown colours
    return ClipBatch(
        images, texts + negative_texts, targets.to(device), labels.to(device), facts, scenes
    )


def training_batch(
    training: ClipTraining, step: int, device: torch.device
) -> tuple[Tensor, list[str], Tensor, Tensor]:
    """Augmented pictures (B, 3, S, S), 2B texts (captions, then hard negatives), the (B, 2B)
    target distribution of each picture over the texts and the pictures' labels (B, 3)."""
    batch = draw_batch(training, step, device)
    return batch.images, batch.texts, batch.targets, batch.labels


def learning_rate(training: ClipTraining, step: int) -> float:
    if step >= training.steps:
        progress = (step - training.steps) / max(1, training.extra_steps)
        return training.extra_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
    if step < training.warmup_steps:
        return training.lr * (step + 1) / training.warmup_steps
    progress = (step - training.warmup_steps) / max(1, training.steps - training.warmup_steps)
    return training.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def clip_optimizer(
    model: torch.nn.Module, head: torch.nn.Module, lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over the CLIP and a head trained with it: weight decay on the CLIP's matrices only
    (not on embeddings, norms, biases or the head)."""

    def decayed(name: str, parameter: torch.nn.Parameter) -> bool:
        return parameter.ndim >= 2 and "embedding" not in name

    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [
            {"params": [p for n, p in named if decayed(n, p)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if not decayed(n, p)], "weight_decay": 0.0},
            {"params": list(head.parameters()), "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


class ClipTrainer:
    """The model, optimiser and step of one run; `state()` / `load()` make it resumable."""

    def __init__(self, training: ClipTraining, device: torch.device | str = "cpu") -> None:
        self.training = training
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(training.seed)
            self.model = build_clip().to(self.device).train()
            classes = len(shapes.SHAPES) + 2 * len(shapes.COLOURS)
            self.probe = torch.nn.Linear(DEMO_CLIP_CONFIG["embed_dim"], classes).to(self.device)
        self.tokenize = tokenizer()
        self.optimizer = clip_optimizer(self.model, self.probe, training.lr, training.weight_decay)
        self.step = 0

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "probe": self.probe.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.probe.load_state_dict(state["probe"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])

    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns its losses."""
        images, texts, targets, labels = training_batch(self.training, self.step, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.training, self.step)
        raw_features = self.model.encode_image(normalise(images))  # (B, D)
        image_features = F.normalize(raw_features, dim=-1)
        text_features = F.normalize(
            self.model.encode_text(self.tokenize(texts).to(self.device)), dim=-1
        )
        scale = self.model.logit_scale.exp().clamp(max=100)
        logits = scale * image_features @ text_features.T  # (B, 2B)
        count = len(images)
        image_loss = -(targets * logits.log_softmax(1)).sum(1).mean()
        # Text -> image over the captions only (hard negatives have no picture in the batch).
        text_targets = targets[:, :count].T
        text_targets = text_targets / text_targets.sum(1, keepdim=True)
        text_loss = -(text_targets * logits[:, :count].T.log_softmax(1)).sum(1).mean()
        probe_logits = self.probe(image_features).split(
            [len(shapes.SHAPES), len(shapes.COLOURS), len(shapes.COLOURS)], dim=1
        )
        probe_loss = sum(
            F.cross_entropy(part, labels[:, index]) for index, part in enumerate(probe_logits)
        )
        loss = (image_loss + text_loss) / 2 + self.training.probe_weight * probe_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {
            "image_loss": float(image_loss.detach()),
            "text_loss": float(text_loss.detach()),
            "probe_loss": float(probe_loss.detach()),
        }


@torch.no_grad()
def evaluate_zero_shot(
    model: torch.nn.Module, seed: int, device: torch.device | str = "cpu", count: int = 256
) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy on clean pictures, training and held-out combinations.

    Each picture is classified among the canonical prompts of all 224 combinations; colour,
    background and shape are scored from the winning prompt, and "exact" needs all three.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    tokenize = tokenizer()
    combos = shapes.all_combos()
    prompts = [
        shapes.prompt_for(shapes.Scene(shape, colour, background, "small", "center"))
        for shape, colour, background in combos
    ]
    text_features = F.normalize(model.encode_text(tokenize(prompts).to(device)), dim=-1)
    results = {}
    for held_out in (False, True):
        rng = step_rng(seed, 0, "clip-eval-held-out" if held_out else "clip-eval-train")
        scenes = [shapes.random_scene(rng, held_out=held_out) for _ in range(count)]
        images = to_tensor([shapes.draw(scene, 64, rng) for scene in scenes], device)
        features = F.normalize(model.encode_image(normalise(images)), dim=-1)
        best = (features @ text_features.T).argmax(1).tolist()
        hits = {"colour": 0, "background": 0, "shape": 0, "exact": 0}
        for scene, index in zip(scenes, best, strict=True):
            shape, colour, background = combos[index]
            hits["shape"] += shape == scene.shape
            hits["colour"] += colour == scene.colour
            hits["background"] += background == scene.background
            hits["exact"] += (shape, colour, background) == scene.combo
        name = "held_out_combos" if held_out else "train_combos"
        results[name] = {key: round(value / count, 3) for key, value in hits.items()}
    model.train(was_training)
    return results
