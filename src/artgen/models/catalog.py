"""Named models: presets with download URLs, the cache dir, downloads, user models, tiny presets.

Layout of the cache dir (`home`):
    vqgan/<name>.yaml, vqgan/<name>.ckpt  preset VQGANs
    clip/<file>                           preset CLIP weights (e.g. ViT-B-32-openai.pt)
    clip/open_clip/                       open_clip's own cache for other name/tag critics
    hashes.json                           sha256 of each downloaded file, recorded on first download
    registry.json                         user-registered VQGANs: name -> config, checkpoint paths
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from artgen.models import clip, demo
from artgen.models.checkpoints import CheckpointError, ModelUnavailable, load_vqgan
from artgen.models.vqgan import VQGAN, VQGANConfig, random_vqgan

# Progress callback: (file name, bytes done, total bytes or None when the server does not say).
Progress = Callable[[str, int, int | None], None]

TINY = "tiny"
DEMO = "demo"  # shipped in the package: trained on drawn shapes (artgen.training.demo)
RANDOM_VQGAN = "random_f16_16384"  # real f16 16384 shapes, random weights (benchmarks)
RANDOM_CLIP = "random_vit_b_32"  # real ViT-B-32 shapes, random weights (benchmarks)
DEFAULT_VQGAN = "wikiart_16384"
DEFAULT_CLIP = "ViT-B-32/openai"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CHUNK_BYTES = 1 << 20
MIRROR = "http://mirror.io.community/blob/vqgan"
HEIBOX = "https://heibox.uni-heidelberg.de/d"
# sha256 of the demo model files in artgen/models/demo, checked on every load.
DEMO_SHA256 = {
    demo.VQGAN_CONFIG: "33e0a722a079f62203d710395e964b421c47b8588fc105f1a905ada5e77d60ed",
    demo.VQGAN_CHECKPOINT: "b734a18532073397f6a4ef704ed222df460ae17566610d47f3fc4eaa04e403a8",
    demo.CLIP_CONFIG: "d6e3d74201bb57885db2f856d28b4c41166f193b0b64c69b96a00a1feb5f2c9c",
    demo.CLIP_WEIGHTS: "3911def29ff2ea2eb3e8440579e847c9b5905d53dbe1621b730d6a5e484641ad",
}


DEMO_VQGAN_DESCRIPTION = "demo VQGAN f8, 512 codes, trained on drawn shapes (in the package)"
DEMO_CLIP_DESCRIPTION = "demo CLIP 64 px, trained on drawn shapes and their captions"


class UnknownModel(ValueError):
    """A model name that is neither a preset, a registered model, nor an open_clip tag."""


def public_message(exc: BaseException) -> str:
    """Why models failed to load, for a service's clients: names and commands, never a path."""
    if isinstance(exc, ModelUnavailable) and exc.public_message:
        return exc.public_message
    if isinstance(exc, UnknownModel):
        return str(exc)  # names only
    return f"{type(exc).__name__} while loading (the server's log has the details)"


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
    """A VQGAN config shipped in artgen/models/configs (tiny, real shapes)."""
    text = resources.files("artgen.models").joinpath("configs", f"{name}.yaml").read_text("utf-8")
    return VQGANConfig.from_yaml(text)


def tiny_vqgan(device: torch.device | str = "cpu") -> VQGAN:
    """The tiny VQGAN: ch 32, ch_mult 1,1,2,2,4, 256 codes, random weights seeded 0."""
    return random_vqgan(packaged_config("tiny"), seed=0, device=device)


def real_shapes_vqgan(device: torch.device | str = "cpu") -> VQGAN:
    """The f16 16384 architecture (ImageNet/WikiArt 16384) with random weights, for benchmarks."""
    return random_vqgan(packaged_config("f16_16384"), seed=0, device=device)


def real_shapes_critic(device: torch.device | str = "cpu") -> clip.Critic:
    """ViT-B-32 (quickgelu, as OpenAI's weights) with random weights, for benchmarks."""
    return clip.random_critic("ViT-B-32-quickgelu", device=device, name=RANDOM_CLIP)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    destination: Path,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` into `<destination>.part`, resuming it with an HTTP Range; returns that path.

    The caller checks the file and renames it, so `destination` only ever holds complete files.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "artgen"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:
            # The partial file is already complete (or longer than the remote one): start over.
            partial.unlink()
            return download_file(url, destination, progress, timeout)
        message = f"download of {url} failed: HTTP {error.code} {error.reason}"
        raise ModelUnavailable(message) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ModelUnavailable(f"cannot reach {url} ({reason})") from None
    with response:
        resumed = response.status == 206
        if not resumed:
            done = 0  # The server ignored the Range header: rewrite from the start.
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with partial.open("ab" if resumed else "wb") as handle:
            if progress is not None:
                progress(destination.name, done, total)
            try:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(destination.name, done, total)
            except (OSError, http.client.HTTPException) as error:
                raise ModelUnavailable(
                    f"download of {url} was interrupted after {done} bytes ({error}); "
                    f"run the same command again to resume from {partial}"
                ) from None
    if total is not None and done != total:
        raise ModelUnavailable(
            f"download of {url} stopped at {done} of {total} bytes; "
            f"run the same command again to resume from {partial}"
        )
    return partial


class Catalog:
    """The models this installation knows, where their files go, and how to build them."""

    def __init__(
        self,
        home: Path,
        vqgan_presets: Mapping[str, VQGANPreset] | None = None,
        clip_presets: Mapping[str, ClipPreset] | None = None,
    ) -> None:
        self.home = Path(home)
        self.vqgan_presets = dict(VQGAN_PRESETS if vqgan_presets is None else vqgan_presets)
        self.clip_presets = dict(CLIP_PRESETS if clip_presets is None else clip_presets)

    # Paths and bookkeeping -------------------------------------------------------------------

    @property
    def hashes_path(self) -> Path:
        return self.home / "hashes.json"

    @property
    def registry_path(self) -> Path:
        return self.home / "registry.json"

    def _read_json(self, path: Path) -> dict[str, object]:
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path}: unreadable ({error}); fix or delete it") from None
        return data if isinstance(data, dict) else {}

    def _write_json(self, path: Path, data: dict[str, object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)

    def registered(self) -> dict[str, dict[str, str]]:
        """User-registered VQGANs: name -> {"config": path, "checkpoint": path}."""
        return {
            str(name): {"config": str(entry["config"]), "checkpoint": str(entry["checkpoint"])}
            for name, entry in self._read_json(self.registry_path).items()
            if isinstance(entry, dict)
        }

    def vqgan_files(self, name: str) -> tuple[Path, Path]:
        """(config, checkpoint) paths of a preset or registered VQGAN, present or not."""
        if name in self.vqgan_presets:
            return self.home / "vqgan" / f"{name}.yaml", self.home / "vqgan" / f"{name}.ckpt"
        registered = self.registered()
        if name in registered:
            return Path(registered[name]["config"]), Path(registered[name]["checkpoint"])
        raise UnknownModel(f"VQGAN {name!r} has no files; known: {', '.join(self.vqgan_names())}")

    def clip_file(self, name: str) -> Path:
        """Where a preset CLIP's weights file goes."""
        if name not in self.clip_presets:
            raise UnknownModel(f"CLIP {name!r} is not a preset with a weights file")
        return self.home / "clip" / self.clip_presets[name].filename

    def vqgan_names(self) -> list[str]:
        """Every VQGAN name build_vqgan accepts."""
        return [*self.vqgan_presets, *self.registered(), TINY, DEMO, RANDOM_VQGAN]

    def clip_names(self) -> list[str]:
        """Catalog CLIP names (any open_clip `arch/tag` is accepted too)."""
        return [*self.clip_presets, TINY, DEMO, RANDOM_CLIP]

    def validate(self, vqgan: str, clips: list[str]) -> None:
        """Raise UnknownModel for a name that no build could satisfy (nothing is loaded)."""
        if vqgan not in self.vqgan_names():
            raise UnknownModel(
                f"unknown VQGAN model {vqgan!r}; known: {', '.join(self.vqgan_names())}"
            )
        if not clips:
            raise UnknownModel("at least one CLIP model is needed")
        for name in clips:
            if name in self.clip_names():
                continue
            arch, _, tag = name.partition("/")
            if not tag or not clip.is_pretrained_tag(arch, tag):
                raise UnknownModel(
                    f"unknown CLIP model {name!r}; use {', '.join(self.clip_names())} "
                    "or an open_clip ARCH/TAG pair from open_clip.list_pretrained()"
                )

    # Listing ---------------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        """Every VQGAN and CLIP the catalog can name, with availability on disk."""
        rows: list[ModelInfo] = []
        for preset in self.vqgan_presets.values():
            config, checkpoint = self.vqgan_files(preset.name)
            rows.append(
                ModelInfo(
                    preset.name,
                    "vqgan",
                    config.is_file() and checkpoint.is_file(),
                    preset.name == DEFAULT_VQGAN,
                    preset.description,
                    preset.size_bytes,
                )
            )
        for name, entry in self.registered().items():
            available = Path(entry["config"]).is_file() and Path(entry["checkpoint"]).is_file()
            size = Path(entry["checkpoint"]).stat().st_size if available else None
            description = f"registered: {entry['checkpoint']}"
            rows.append(ModelInfo(name, "vqgan", available, False, description, size))
        rows.append(ModelInfo(TINY, "vqgan", True, False, "tiny random VQGAN for tests", None))
        rows.append(ModelInfo(DEMO, "vqgan", True, False, DEMO_VQGAN_DESCRIPTION, None))
        rows.append(
            ModelInfo(RANDOM_VQGAN, "vqgan", True, False, "f16 16384 shapes, random weights", None)
        )
        for preset in self.clip_presets.values():
            rows.append(
                ModelInfo(
                    preset.name,
                    "clip",
                    self.clip_file(preset.name).is_file(),
                    preset.name == DEFAULT_CLIP,
                    preset.description,
                    preset.size_bytes,
                )
            )
        rows.append(ModelInfo(TINY, "clip", True, False, "tiny random CLIP for tests", None))
        rows.append(ModelInfo(DEMO, "clip", True, False, DEMO_CLIP_DESCRIPTION, None))
        rows.append(
            ModelInfo(RANDOM_CLIP, "clip", True, False, "ViT-B-32 shapes, random weights", None)
        )
        return rows

    # Downloads -------------------------------------------------------------------------------

    def _fetch(self, url: str, destination: Path, progress: Progress | None, sha256: str | None):
        """Download one file, then check (or record) its sha256 before moving it into place."""
        partial = download_file(url, destination, progress)
        digest = sha256_file(partial)
        key = destination.relative_to(self.home).as_posix()
        hashes = self._read_json(self.hashes_path)
        expected = sha256 or hashes.get(key)
        if expected is not None and digest != expected:
            partial.unlink()
            raise CheckpointError(
                f"{destination}: sha256 mismatch after download from {url}: expected {expected}, "
                f"got {digest}; the file was deleted. If the upstream file really changed, remove "
                f"{key!r} from {self.hashes_path} and download again"
            )
        os.replace(partial, destination)
        if key not in hashes:
            hashes[key] = digest
            self._write_json(self.hashes_path, hashes)
        return destination

    def download(self, name: str, progress: Progress | None = None) -> list[Path]:
        """Download a preset's files (skipping those present); returns their paths."""
        jobs: list[tuple[str, Path, str | None]] = []
        if name in self.vqgan_presets:
            preset = self.vqgan_presets[name]
            config, checkpoint = self.vqgan_files(name)
            jobs = [(preset.config_url, config, None), (preset.checkpoint_url, checkpoint, None)]
        elif name in self.clip_presets:
            clip_preset = self.clip_presets[name]
            jobs = [(clip_preset.url, self.clip_file(name), clip_preset.sha256)]
        elif name in (TINY, DEMO, RANDOM_VQGAN, RANDOM_CLIP):
            return []
        else:
            arch, _, tag = name.partition("/")
            if tag and clip.is_pretrained_tag(arch, tag):
                # open_clip's own downloader and cache; building the critic fetches the weights.
                clip.pretrained_critic(arch, tag, self.home / "clip" / "open_clip")
                return [self.home / "clip" / "open_clip"]
            raise UnknownModel(f"{name!r} is not a downloadable model; see `artgen models list`")
        paths = []
        for url, destination, sha256 in jobs:
            if not destination.is_file():
                self._fetch(url, destination, progress, sha256)
            paths.append(destination)
        return paths

    def add(self, name: str, config: Path, checkpoint: Path) -> ModelInfo:
        """Register local VQGAN files under `name`, after checking that they load."""
        if not NAME_PATTERN.match(name):
            raise ValueError(f"model name {name!r}: use letters, digits, '_', '-', '.' (max 64)")
        if name in self.vqgan_presets or name in (TINY, DEMO, RANDOM_VQGAN):
            raise ValueError(f"model name {name!r} is a built-in preset; pick another name")
        config, checkpoint = Path(config).resolve(), Path(checkpoint).resolve()
        load_vqgan(config, checkpoint, "cpu")
        registry = self._read_json(self.registry_path)
        registry[name] = {"config": str(config), "checkpoint": str(checkpoint)}
        self._write_json(self.registry_path, registry)
        description = f"registered: {checkpoint}"
        return ModelInfo(name, "vqgan", True, False, description, checkpoint.stat().st_size)

    # Building --------------------------------------------------------------------------------

    def _missing(self, kind: str, name: str, files: list[Path], size: int | None) -> None:
        missing = [path for path in files if not path.is_file()]
        if not missing:
            return
        listed = " and ".join(str(path) for path in missing)
        if name in self.vqgan_presets or name in self.clip_presets:
            about = f" (about {size / 1e9:.1f} GB)" if size else ""
            files = "files" if len(missing) > 1 else "file"
            command = f"artgen models download {name}"
            how = f"fetch it with `{command}`{about} or put the {files} there"
        else:
            command = f"artgen models add {name} --config F --checkpoint F"
            how = f"re-register it with `{command}`"
        public = f"{kind} {name!r} is not installed on this server; an operator runs `{command}`"
        raise ModelUnavailable(
            f"{kind} {name!r} is not available: missing {listed}; {how}", public_message=public
        )

    def build_vqgan(self, name: str, device: torch.device | str = "cpu") -> VQGAN:
        """Load (or, for tiny/random presets, construct) a VQGAN by name."""
        if name == TINY:
            return tiny_vqgan(device)
        if name == DEMO:
            return demo.demo_vqgan(DEMO_SHA256, device)
        if name == RANDOM_VQGAN:
            return real_shapes_vqgan(device)
        config, checkpoint = self.vqgan_files(name)
        size = self.vqgan_presets[name].size_bytes if name in self.vqgan_presets else None
        self._missing("VQGAN", name, [config, checkpoint], size)
        return load_vqgan(config, checkpoint, device)

    def build_critic(self, name: str, device: torch.device | str = "cpu") -> clip.Critic:
        """Load (or, for tiny/random presets, construct) a CLIP critic by name."""
        if name == TINY:
            return clip.tiny_critic(device)
        if name == DEMO:
            return demo.demo_critic(DEMO_SHA256, device)
        if name == RANDOM_CLIP:
            return real_shapes_critic(device)
        if name in self.clip_presets:
            preset = self.clip_presets[name]
            path = self.clip_file(name)
            self._missing("CLIP", name, [path], preset.size_bytes)
            return clip.openai_critic(path, name=name, arch=preset.arch, device=device)
        arch, _, tag = name.partition("/")
        if tag and clip.is_pretrained_tag(arch, tag):
            return clip.pretrained_critic(arch, tag, self.home / "clip" / "open_clip", device)
        raise UnknownModel(
            f"unknown CLIP model {name!r}; use {', '.join(self.clip_names())} "
            "or an open_clip ARCH/TAG pair"
        )


__all__ = [
    "Catalog",
    "ClipPreset",
    "ModelInfo",
    "ModelUnavailable",
    "UnknownModel",
    "VQGANPreset",
    "download_file",
    "real_shapes_critic",
    "real_shapes_vqgan",
    "tiny_vqgan",
]
