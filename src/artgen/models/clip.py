"""CLIP critics over open_clip: text and image embeddings with CLIP's normalisation inside.

open_clip is imported inside the builders: it takes seconds to import, and listing models or
reading checkpoints should not pay for it.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from artgen.models.checkpoints import CheckpointError, ModelUnavailable, read_checkpoint

# Keys of TorchScript archives that are not parameters of open_clip's CLIP.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
# CLIP's input normalisation (OpenAI's values; open_clip's OPENAI_DATASET_MEAN/STD).
OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)
# The tokenizer bundled in open_clip's wheel (no download); shared by every OpenAI-style model.
BUNDLED_TOKENIZER = "ViT-B-32"


class Critic(nn.Module):
    """A frozen CLIP model seen through the two calls the engine needs."""

    model: Any  # open_clip's CLIP: its towers' attributes are not typed
    mean: Tensor  # (1, 3, 1, 1) buffers
    std: Tensor

    def __init__(
        self,
        name: str,
        model: nn.Module,
        tokenizer: Callable[[list[str]], Tensor],
        mean: Sequence[float] = OPENAI_DATASET_MEAN,
        std: Sequence[float] = OPENAI_DATASET_STD,
    ) -> None:
        super().__init__()
        self.name = name
        self.model = model.float().eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        size = self.model.visual.image_size
        self.cut_size = int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return self.mean.device

    def encode_text(self, texts: list[str]) -> Tensor:
        """Texts -> (N, D) float32 embeddings, not normalised."""
        tokens = self.tokenizer(list(texts)).to(self.device)  # (N, context_length)
        return self.model.encode_text(tokens).float()  # (N, D)

    def encode_image(self, images: Tensor) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] -> (B, D) float32 embeddings, not normalised."""
        normalised = (images - self.mean) / self.std  # (B, 3, S, S)
        return self.model.encode_image(normalised).float()  # (B, D)


def _tokenizer(arch: str = BUNDLED_TOKENIZER) -> Callable[[list[str]], Tensor]:
    """open_clip's tokenizer for `arch` (the bundled BPE one for OpenAI-style models)."""
    import open_clip

    return open_clip.get_tokenizer(arch)


def _finish(critic: Critic, device: torch.device | str) -> Critic:
    return critic.to(device).eval().requires_grad_(False)


def tiny_critic(device: torch.device | str = "cpu", seed: int = 0) -> Critic:
    """A tiny ViT CLIP (width 64, 2 layers, patch 16, 64 px) with random weights from `seed`."""
    import open_clip

    vision = open_clip.model.CLIPVisionCfg(
        layers=2, width=64, head_width=32, patch_size=16, image_size=64
    )
    text = open_clip.model.CLIPTextCfg(width=64, heads=2, layers=2)
    # fork_rng: the same weights every time, and the caller's global RNG is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.model.CLIP(embed_dim=64, vision_cfg=vision, text_cfg=text)
    return _finish(Critic("tiny", model, _tokenizer()), device)


def random_critic(
    arch: str = "ViT-B-32-quickgelu",
    device: torch.device | str = "cpu",
    seed: int = 0,
    name: str | None = None,
) -> Critic:
    """Any open_clip architecture with random weights (real shapes for benchmarks, no download)."""

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_arch(arch)
    return _finish(Critic(name or f"{arch}/random", model, _tokenizer(arch)), device)


def _build_arch(arch: str) -> nn.Module:
    """An open_clip architecture with its default (random) initialisation."""
    import open_clip

    config = open_clip.get_model_config(arch)
    if config is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}")
    if config.get("custom_text") or "hf_model_name" in config.get("text_cfg", {}):
        return open_clip.create_model(arch, pretrained=None)
    # Built directly: create_model would log that the model is "initialized randomly".
    return open_clip.model.CLIP(**config)


def _openai_state_dict(path: Path) -> dict[str, Tensor]:
    """OpenAI's released files are TorchScript archives; plain state dicts are read safely."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    is_torchscript = False
    try:
        with zipfile.ZipFile(path) as archive:
            is_torchscript = any(n.endswith("constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        pass
    if is_torchscript:
        try:
            with warnings.catch_warnings():
                # OpenAI's weights exist only as TorchScript; the deprecation is not actionable.
                warnings.simplefilter("ignore", FutureWarning)
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as error:
            raise CheckpointError(f"{path}: corrupt CLIP archive ({error})") from None
    else:
        state = read_checkpoint(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: not a CLIP state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if key not in OPENAI_EXTRA_KEYS}


def openai_critic(
    path: str | Path,
    name: str = "ViT-B-32/openai",
    arch: str = "ViT-B-32-quickgelu",
    device: torch.device | str = "cpu",
) -> Critic:
    """OpenAI CLIP weights from a local file (e.g. ViT-B-32.pt) into open_clip's `arch`."""
    path = Path(path)
    state = _openai_state_dict(path)
    with torch.random.fork_rng(devices=[]):
        model = _build_arch(arch)
    load_openai_weights(model, state, path)
    return _finish(Critic(name, model, _tokenizer(arch)), device)


def load_openai_weights(model: nn.Module, state: dict[str, Tensor] | Path, path: Path) -> None:
    """Load OpenAI-format CLIP weights (a state dict, or the file at `path`) strictly."""
    if isinstance(state, Path):
        state = _openai_state_dict(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0]
        message = f"{path}: does not fit this CLIP architecture: {reason[:300]}"
        raise CheckpointError(message) from None


def is_pretrained_tag(arch: str, tag: str) -> bool:
    """Whether open_clip knows the architecture/tag pair."""
    import open_clip

    return (arch, tag) in {(a, t) for a, t in open_clip.list_pretrained()}


def pretrained_critic(
    arch: str, tag: str, cache_dir: str | Path, device: torch.device | str = "cpu"
) -> Critic:
    """Any open_clip `arch/tag`, downloaded by open_clip's own mechanism into `cache_dir`."""
    import open_clip

    name = f"{arch}/{tag}"
    if not is_pretrained_tag(arch, tag):
        raise ValueError(f"unknown CLIP model {name!r}: not in open_clip.list_pretrained()")
    try:
        model = open_clip.create_model(arch, pretrained=tag, cache_dir=str(cache_dir))
        tokenizer = open_clip.get_tokenizer(arch, cache_dir=str(cache_dir))
    except Exception as error:
        raise ModelUnavailable(
            f"CLIP {name} could not be loaded or downloaded into {cache_dir} "
            f"({str(error).splitlines()[0][:200]}); run `artgen models download {name}` "
            "on a machine with network access",
            public_message=f"CLIP {name} is not installed on this server; an operator runs "
            f"`artgen models download {name}`",
        ) from None
    config = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = config.get("mean", OPENAI_DATASET_MEAN)
    std = config.get("std", OPENAI_DATASET_STD)
    return _finish(Critic(name, model, tokenizer, mean, std), device)
