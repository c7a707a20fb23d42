"""The models artgen knows by name: downloadable presets (URLs, sizes, digests), the built-in
names (tiny, demo, random full-size shapes) and the builders of the ones that need no download."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import torch

from artgen.models import clip, demo
from artgen.models.vqgan import VQGAN, VQGANConfig, random_vqgan

TINY = "tiny"
DEMO = "demo"  # shipped in the package: trained on drawn shapes (artgen.training.demo)
RANDOM_VQGAN = "random_f16_16384"  # the f16 16384 architecture, random weights (benchmarks)
RANDOM_CLIP = "random_vit_b_32"  # the ViT-B-32 architecture, random weights (benchmarks)
DEFAULT_VQGAN = "wikiart_16384"
DEFAULT_CLIP = "ViT-B-32/openai"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIRROR = "http://mirror.io.community/blob/vqgan"
HEIBOX = "https://heibox.uni-heidelberg.de/d"
# sha256 of the demo model files in artgen/models/demo, checked on every load.
DEMO_SHA256 = {
    demo.VQGAN_CONFIG: "33e0a722a079f62203d710395e964b421c47b8588fc105f1a905ada5e77d60ed",
    demo.VQGAN_CHECKPOINT: "33b842ea2fc9023983c43d89ea20ba5f1e98517b1b543c78ff45921657e64a31",
    demo.CLIP_CONFIG: "d6e3d74201bb57885db2f856d28b4c41166f193b0b64c69b96a00a1feb5f2c9c",
    demo.CLIP_WEIGHTS: "706c3919e6e3bc1e43ebbea277a76cd8917689e0b6ab8071bc52229786a7b2bb",
}


DEMO_VQGAN_DESCRIPTION = "demo VQGAN f8, 512 codes, trained on drawn shapes (in the package)"
DEMO_CLIP_DESCRIPTION = "demo CLIP 64 px, trained on drawn shapes and their captions"


@dataclass(frozen=True)
class VQGANPreset:
    """A downloadable VQGAN: its YAML config and Lightning checkpoint."""

    name: str
    config_url: str
    checkpoint_url: str
    size_bytes: int  # approximate checkpoint size, for the user's information
    description: str


@dataclass(frozen=True)
class ClipPreset:
    """A downloadable CLIP weights file in OpenAI's format."""

    name: str
    arch: str  # open_clip architecture the weights fit
    url: str
    filename: str
    size_bytes: int
    description: str
    sha256: str | None = None  # known digest, checked on download


@dataclass(frozen=True)
class ModelInfo:
    """One row of `list_models()`."""

    name: str
    kind: str  # "vqgan" or "clip"
    available: bool  # weights on disk (or not needed: tiny and random presets)
    default: bool
    description: str
    size_bytes: int | None


VQGAN_PRESETS: dict[str, VQGANPreset] = {
    preset.name: preset
    for preset in (
        VQGANPreset(
            "wikiart_16384",
            f"{MIRROR}/wikiart_16384.yaml",
            f"{MIRROR}/wikiart_16384.ckpt",
            1_000_000_000,
            "WikiArt f16, 16384 codes (the seed's model; paintings)",
        ),
        VQGANPreset(
            "imagenet_f16_16384",
            f"{MIRROR}/vqgan_imagenet_f16_16384.yaml",
            f"{MIRROR}/vqgan_imagenet_f16_16384.ckpt",
            980_000_000,
            "ImageNet f16, 16384 codes",
        ),
        VQGANPreset(
            "imagenet_f16_1024",
            f"{MIRROR}/vqgan_imagenet_f16_1024.yaml",
            f"{MIRROR}/vqgan_imagenet_f16_1024.ckpt",
            958_000_000,
            "ImageNet f16, 1024 codes",
        ),
        VQGANPreset(
            "gumbel_f8_8192",
            f"{HEIBOX}/2e5662443a6b4307b470/files/?p=%2Fconfigs%2Fmodel.yaml&dl=1",
            f"{HEIBOX}/2e5662443a6b4307b470/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
            376_000_000,
            "OpenImages f8 Gumbel, 8192 codes (finer detail, 8 px per token)",
        ),
        VQGANPreset(
            "sflckr",
            f"{HEIBOX}/73487ab6e5314cb5adba/files/"
            "?p=%2Fconfigs%2F2020-11-09T13-31-51-project.yaml&dl=1",
            f"{HEIBOX}/73487ab6e5314cb5adba/files/?p=%2Fcheckpoints%2Flast.ckpt&dl=1",
            4_100_000_000,
            "S-FLCKR landscapes (Net2Net checkpoint; first stage used)",
        ),
        VQGANPreset(
            "coco",
            "https://dl.nmkd.de/ai/clip/coco/coco.yaml",
            "https://dl.nmkd.de/ai/clip/coco/coco.ckpt",
            8_400_000_000,
            "COCO (Net2Net checkpoint; first stage used)",
        ),
    )
}

CLIP_PRESETS: dict[str, ClipPreset] = {
    "ViT-B-32/openai": ClipPreset(
        "ViT-B-32/openai",
        "ViT-B-32-quickgelu",
        "https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        "ViT-B-32-openai.pt",
        354_000_000,
        "OpenAI CLIP ViT-B/32 (the seed's critic)",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    ),
}


def packaged_config(name: str) -> VQGANConfig:
    """A VQGAN config shipped in artgen/models/configs (tiny, f16_16384)."""
    text = resources.files("artgen.models").joinpath("configs", f"{name}.yaml").read_text("utf-8")
    return VQGANConfig.from_yaml(text)


def tiny_vqgan(device: torch.device | str = "cpu") -> VQGAN:
    """The tiny VQGAN: ch 32, ch_mult 1,1,2,2,4, 256 codes, random weights seeded 0."""
    return random_vqgan(packaged_config("tiny"), seed=0, device=device)


def random_f16_vqgan(device: torch.device | str = "cpu") -> VQGAN:
    """The f16 16384 architecture (ImageNet/WikiArt 16384) with random weights, for benchmarks."""
    return random_vqgan(packaged_config("f16_16384"), seed=0, device=device)


def random_vit_b_32_critic(device: torch.device | str = "cpu") -> clip.Critic:
    """ViT-B-32 (quickgelu, as OpenAI's weights) with random weights, for benchmarks."""
    return clip.random_critic("ViT-B-32-quickgelu", device=device, name=RANDOM_CLIP)
