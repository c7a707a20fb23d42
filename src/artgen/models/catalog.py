"""The catalog: which named model (a preset of artgen.models.presets, or one the user registered)
has its files where in the cache dir, downloading them, and building a model by name.

Layout of the cache dir (`home`):
    vqgan/<name>.yaml, vqgan/<name>.ckpt  preset VQGANs
    clip/<file>                           preset CLIP weights (e.g. ViT-B-32-openai.pt)
    clip/open_clip/                       open_clip's own cache for other name/tag critics
    hashes.json                           sha256 of each downloaded file, recorded on first download
    registry.json                         user-registered VQGANs: name -> config, checkpoint paths
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from artgen.models import clip, demo
from artgen.models.checkpoints import CheckpointError, ModelUnavailable, load_vqgan
from artgen.models.downloads import Progress, download_file, sha256_file
from artgen.models.presets import (
    CLIP_PRESETS,
    DEFAULT_CLIP,
    DEFAULT_VQGAN,
    DEMO,
    DEMO_CLIP_DESCRIPTION,
    DEMO_SHA256,
    DEMO_VQGAN_DESCRIPTION,
    NAME_PATTERN,
    RANDOM_CLIP,
    RANDOM_VQGAN,
    TINY,
    VQGAN_PRESETS,
    ClipPreset,
    ModelInfo,
    VQGANPreset,
    random_f16_vqgan,
    random_vit_b_32_critic,
    tiny_vqgan,
)
from artgen.models.vqgan import VQGAN


class UnknownModel(ValueError):
    """A model name that is neither a preset, a registered model, nor an open_clip tag."""


def public_message(exc: BaseException) -> str:
    """Why models failed to load, for a service's clients: names and commands, never a path."""
    if isinstance(exc, ModelUnavailable) and exc.public_message:
        return exc.public_message
    if isinstance(exc, UnknownModel):
        return str(exc)  # names only
    return f"{type(exc).__name__} while loading (the server's log has the details)"


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
        for clip_preset in self.clip_presets.values():
            rows.append(
                ModelInfo(
                    clip_preset.name,
                    "clip",
                    self.clip_file(clip_preset.name).is_file(),
                    clip_preset.name == DEFAULT_CLIP,
                    clip_preset.description,
                    clip_preset.size_bytes,
                )
            )
        rows.append(ModelInfo(TINY, "clip", True, False, "tiny random CLIP for tests", None))
        rows.append(ModelInfo(DEMO, "clip", True, False, DEMO_CLIP_DESCRIPTION, None))
        rows.append(
            ModelInfo(RANDOM_CLIP, "clip", True, False, "ViT-B-32 shapes, random weights", None)
        )
        return rows

    # Downloads -------------------------------------------------------------------------------

    def _fetch(
        self, url: str, destination: Path, progress: Progress | None, sha256: str | None
    ) -> Path:
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
            them = "files" if len(missing) > 1 else "file"
            command = f"artgen models download {name}"
            how = f"fetch it with `{command}`{about} or put the {them} there"
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
            return random_f16_vqgan(device)
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
            return random_vit_b_32_critic(device)
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
