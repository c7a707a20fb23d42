"""One CLIP-guided VQGAN generation (Crowson's method) as an object, and a loop that runs it.

A latent grid z is optimised so that CLIP embeddings of random cutouts of decode(quantize(z)) move
toward the prompt embeddings. Pure: no file I/O, no globals; all randomness comes from one
torch.Generator seeded from the job's seed.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from artgen.engine.cutouts import FastCutouts, ReferenceCutouts
from artgen.engine.images import fit_area, from_pil, to_pil
from artgen.engine.ops import clamp_with_grad
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.engine.prompts import Prompt, noise_embedding, parse_prompts
from artgen.models.quantizers import snap_to_codebook

if TYPE_CHECKING:
    from artgen.models.loading import Models

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}


@dataclass
class StepResult:
    """What one step returns: the iteration count after it and the loss as a device tensor."""

    iteration: int
    loss: Tensor  # 0-d, on the device; reading it (float()) waits for the GPU


def rounded_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """Round width/height down to the model's factor; refuse sizes below one latent token."""
    rounded = (width // factor * factor, height // factor * factor)
    if min(rounded) == 0:
        raise ValueError(
            f"size {width}x{height} is below one latent token of this model: width and height "
            f"must be at least {factor}"
        )
    return rounded


class _MaybeCompiled:
    """torch.compile a function, and fall back to eager for good if compiling fails."""

    def __init__(self, function: Callable[..., Tensor], mode: str | None = None) -> None:
        self.function = function
        self.compiled: Callable[..., Tensor] | None
        try:
            self.compiled = torch.compile(function, mode=mode, dynamic=False)
        except Exception as error:  # noqa: BLE001 - any backend problem means "run eagerly"
            warnings.warn(f"torch.compile unavailable, running eagerly: {error}", stacklevel=2)
            self.compiled = None

    def __call__(self, *args: Any) -> Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as error:  # noqa: BLE001
                warnings.warn(f"torch.compile failed, running eagerly: {error}", stacklevel=2)
                self.compiled = None
        return self.function(*args)


class SetupStopped(Exception):
    """`should_stop` answered True while a Generation was being set up (embedding prompts)."""


class Generation:
    """The state of one generation: z, its optimiser, the prompts and the job's generator."""

    def __init__(
        self,
        models: Models,
        params: GenerationParams,
        *,
        device: torch.device,
        init_image: Image.Image | None = None,
        image_prompts: Sequence[Image.Image] = (),
        options: EngineOptions = EngineOptions(),
        should_stop: Callable[[], bool] | None = None,
        text_embeddings: dict[str, list[list[Prompt]]] | None = None,
    ) -> None:
        """`options` choose how it computes (None fields: decided for the device and size).
        `should_stop` is asked before each text prompt set is embedded (a schedule may have
        many); when it answers True, SetupStopped is raised. `text_embeddings` is a cache of
        embedded text prompts shared by Generations on the same models (an animation's frames):
        texts found there are not embedded again, new ones are added to it."""
        device = torch.device(device)
        self.models, self.params, self.device = models, params, device
        self.seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        self.iteration = 0

        vqgan = models.vqgan
        self.width, self.height = rounded_size(params.width, params.height, vqgan.factor)
        self.options = options.resolved(device, self.width * self.height)
        tokens_x, tokens_y = self.width // vqgan.factor, self.height // vqgan.factor
        self._check_prompts(image_prompts)

        # Inference only: no gradients into the weights. The weights' memory layout is left as it
        # is: the models are shared by other generations (load_models sets channels_last on CUDA).
        vqgan.requires_grad_(False)
        for critic in models.critics:
            critic.requires_grad_(False)
        self._codebook = vqgan.codebook.detach().float()  # (K, D)
        self._z_min = self._codebook.min(dim=0).values[None, :, None, None]
        self._z_max = self._codebook.max(dim=0).values[None, :, None, None]

        cutout_class = FastCutouts if self.fast else ReferenceCutouts
        self._cutouts = [
            cutout_class(critic.cut_size, params.cutn, params.cut_pow, params.augment)
            for critic in models.critics
        ]
        decode: Callable[[Tensor], Tensor] = (
            partial(vqgan.decode, recompute=True) if self.recompute_decoder else vqgan.decode
        )
        # compile: True for torch.compile's default mode, or a mode name ("reduce-overhead").
        compile = self.options.compile
        mode = compile if isinstance(compile, str) else None
        self._decode = _MaybeCompiled(decode, mode) if compile else decode
        self._encode_images = [
            _MaybeCompiled(critic.encode_image, mode) if compile else critic.encode_image
            for critic in models.critics
        ]

        # 1. The starting latent: an encoded init image, or random codebook tokens.
        with torch.no_grad():
            if init_image is not None:
                pixels = from_pil(init_image, (self.width, self.height)).to(device)
                z = snap_to_codebook(vqgan.encode(pixels * 2 - 1).float(), self._codebook)
            else:
                tokens = torch.randint(
                    self._codebook.shape[0],
                    (tokens_y * tokens_x,),
                    generator=self.generator,
                    device=device,
                )
                z = self._codebook[tokens].view(1, tokens_y, tokens_x, -1).permute(0, 3, 1, 2)
        self.z = z.contiguous().requires_grad_(True)  # (1, D, h, w), fp32
        self._z_initial = z.detach().clone()

        # 2. Prompts, per critic: text (one set per schedule segment), image and noise prompts.
        embedded = {} if text_embeddings is None else text_embeddings
        self._text_prompts: dict[str, list[list[Prompt]]] = {}
        for text in {params.prompts, *(item.prompts for item in params.schedule)}:
            if text not in embedded:
                if should_stop is not None and should_stop():
                    raise SetupStopped("stopped while embedding the prompts")
                embedded[text] = self._embed_texts(text)
            self._text_prompts[text] = embedded[text]
        self._image_prompts = self._embed_images(image_prompts)
        self._noise_prompts = self._make_noise_prompts()

        optimizer_class = _OPTIMIZERS[params.optimizer]
        settings: dict[str, Any] = {"lr": params.step_size}
        if self.options.fused_optimizer and params.optimizer in ("adam", "adamw"):
            settings["fused"] = True  # one kernel for the whole update
        self.optimizer = optimizer_class([self.z], **settings)

    @property
    def fast(self) -> bool:
        """Whether this generation takes the fast path (batched cutouts)."""
        return bool(self.options.fast)

    @property
    def iterations(self) -> int:
        """Iterations this generation makes in all (params.iterations)."""
        return self.params.iterations

    @property
    def recompute_decoder(self) -> bool:
        """Whether decoder blocks are recomputed in backward."""
        return bool(self.options.recompute_decoder)

    def _check_prompts(self, image_prompts: Sequence[Image.Image]) -> None:
        """Every schedule segment needs something to aim at; image weights and stops must match
        images."""
        for name in ("image_prompt_weights", "image_prompt_stops"):
            values = getattr(self.params, name)
            if values and len(values) != len(image_prompts):
                raise ValueError(
                    f"{name} has {len(values)} {name.rsplit('_', 1)[1]} for "
                    f"{len(image_prompts)} image prompts"
                )
        if image_prompts or self.params.noise_prompts.strip():
            return
        for text in [self.params.prompts, *(item.prompts for item in self.params.schedule)]:
            if not parse_prompts(text):
                raise ValueError("prompts: empty; give a text prompt, an image prompt or both")

    @torch.no_grad()
    def _embed_texts(self, text: str) -> list[list[Prompt]]:
        """Text prompts of `text` for each critic."""
        specs = parse_prompts(text)
        if not specs:
            return [[] for _ in self.models.critics]
        per_critic = []
        for critic in self.models.critics:
            embeddings = critic.encode_text([spec.text for spec in specs]).float()  # (N, D)
            per_critic.append(
                [
                    Prompt(embeddings[index : index + 1], spec.weight, spec.stop).to(self.device)
                    for index, spec in enumerate(specs)
                ]
            )
        return per_critic

    @torch.no_grad()
    def _embed_images(self, images: Sequence[Image.Image]) -> list[list[Prompt]]:
        """Image prompts: embeddings of cutouts of each image, resized as the seed resizes them
        (aspect ratio kept, area at most the output's), with their weights and stops."""
        weights = self.params.image_prompt_weights or [1.0] * len(images)
        stops = self.params.image_prompt_stops or [None] * len(images)
        per_critic: list[list[Prompt]] = [[] for _ in self.models.critics]
        for image, weight, stop in zip(images, weights, stops, strict=True):
            pixels = from_pil(fit_area(image, (self.width, self.height))).to(self.device)
            stop_value = -math.inf if stop is None else stop
            for index, critic in enumerate(self.models.critics):
                cutouts = self._cutouts[index](pixels, self.generator)
                with self._precision():
                    embeddings = critic.encode_image(cutouts).float()  # (cutn, D)
                per_critic[index].append(Prompt(embeddings, weight, stop_value).to(self.device))
        return per_critic

    @torch.no_grad()
    def _make_noise_prompts(self) -> list[list[Prompt]]:
        """Noise prompts: a seeded random embedding of each critic's width."""
        specs = self.params.noise_prompt_specs()
        per_critic: list[list[Prompt]] = []
        for critic in self.models.critics:
            if not specs:
                per_critic.append([])
                continue
            dim = critic.encode_text([""]).shape[-1]
            per_critic.append(
                [
                    Prompt(noise_embedding(spec.seed, dim), spec.weight).to(self.device)
                    for spec in specs
                ]
            )
        return per_critic

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast where enabled (by default the fast CUDA path); plain fp32 otherwise."""
        if self.options.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def synthesize(self, z: Tensor) -> Tensor:
        """Quantize z, decode, map to [0, 1]: (B, D, h, w) -> (B, 3, H, W) fp32."""
        z_q = snap_to_codebook(z, self._codebook)
        if self.options.channels_last:
            z_q = z_q.contiguous(memory_format=torch.channels_last)
        with self._precision():
            decoded = self._decode(z_q)
        return clamp_with_grad(decoded.float().add(1).div(2), 0, 1)

    def draw_cutouts(self, image: Tensor) -> list[Tensor]:
        """One batch of cutouts (cutn, 3, S, S) of `image` (1, 3, H, W) per critic."""
        return [cutouts(image, self.generator) for cutouts in self._cutouts]

    def embed_cutouts(self, index: int, cutouts: Tensor) -> Tensor:
        """Critic `index`'s embeddings (B, D) fp32 of cutouts (B, 3, S, S)."""
        if self.options.channels_last:
            cutouts = cutouts.contiguous(memory_format=torch.channels_last)
        with self._precision():
            return self._encode_images[index](cutouts).float()

    def loss_from(self, embeddings: Sequence[Tensor]) -> Tensor:
        """The total loss given each critic's cutout embeddings: prompts in force + init_weight."""
        losses = []
        if self.params.init_weight:
            losses.append(F.mse_loss(self.z, self._z_initial) * (self.params.init_weight / 2))
        texts = self._text_prompts[self.params.prompts_at(self.iteration)]
        for index, critic_embeddings in enumerate(embeddings):
            prompts = texts[index] + self._image_prompts[index] + self._noise_prompts[index]
            losses.extend(prompt(critic_embeddings) for prompt in prompts)
        return torch.stack(losses).sum()

    def loss(self) -> Tensor:
        """The total loss of the current z (one draw of cutouts); a 0-d tensor with a graph."""
        image = self.synthesize(self.z)
        cutouts = self.draw_cutouts(image)
        return self.loss_from([self.embed_cutouts(i, batch) for i, batch in enumerate(cutouts)])

    def step(self) -> StepResult:
        """One iteration: loss, backward, optimiser step, clamp z to the codebook's range."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        return self.finish_step(loss)

    def finish_step(self, loss: Tensor) -> StepResult:
        """After backward: optimiser step, clamp z to the codebook's range, count the iteration."""
        self.optimizer.step()
        with torch.no_grad():
            self.z.copy_(self.z.maximum(self._z_min).minimum(self._z_max))
        self.iteration += 1
        return StepResult(iteration=self.iteration, loss=loss.detach())

    @torch.no_grad()
    def image_tensor(self) -> Tensor:
        """The current image as a (1, 3, H, W) tensor in [0, 1] on the device."""
        return self.synthesize(self.z)

    def image(self) -> Image.Image:
        """Decode the current z into a PIL image."""
        return to_pil(self.image_tensor())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly here (CPU tensors)."""
        return tensors_to_cpu(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """state_dict() with its tensors still on the device: copies queued on the device, no
        host sync, so a caller can move it to the CPU later, off the generation loop."""
        return {
            "iteration": self.iteration,
            "seed": self.seed,
            "z": self.z.detach().clone(),
            "z_initial": self._z_initial.clone(),
            "optimizer": _clone(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "image_prompt_embeddings": [
                [prompt.embed.clone() for prompt in prompts] for prompts in self._image_prompts
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict() of a Generation with the same params and images."""
        z = state["z"]
        if tuple(z.shape) != tuple(self.z.shape):
            raise ValueError(
                f"saved latent has shape {tuple(z.shape)}, this generation {tuple(self.z.shape)}: "
                "were the size or model changed?"
            )
        with torch.no_grad():
            self.z.copy_(z.to(self.device))
            self._z_initial = state["z_initial"].to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.iteration = int(state["iteration"])
        self.seed = int(state["seed"])
        saved_images = state.get("image_prompt_embeddings", [])
        for prompts, embeddings in zip(self._image_prompts, saved_images, strict=False):
            for prompt, embed in zip(prompts, embeddings, strict=True):
                prompt.embed = embed.to(self.device)


def tensors_to_cpu(value: Any) -> Any:
    """Every tensor inside nested dicts/lists moved to the CPU (CPU tensors are kept as is)."""
    return _map_tensors(value, lambda tensor: tensor.detach().cpu())


def _clone(value: Any) -> Any:
    return _map_tensors(value, lambda tensor: tensor.detach().clone())


def _map_tensors(value: Any, function: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(value, Tensor):
        return function(value)
    if isinstance(value, dict):
        return {key: _map_tensors(item, function) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(item, function) for item in value)
    return value
