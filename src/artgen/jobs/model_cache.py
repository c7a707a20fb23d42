"""The worker's loaded model sets: an LRU cache keyed by (VQGAN, CLIP models)."""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

import torch

from artgen.config import Settings
from artgen.jobs.schemas import JobCreate
from artgen.models.catalog import Catalog, public_message
from artgen.models.loading import Models, load_models

logger = logging.getLogger("artgen.jobs.worker")

# (vqgan name, clip names, device) -> Models
ModelsLoader = Callable[[str, list[str], torch.device], Models]
ModelsKey = tuple[str, tuple[str, ...]]


class ModelsNotLoaded(Exception):
    """A job names models this worker cannot load (the message is safe to show its client)."""


def default_models_loader(settings: Settings) -> ModelsLoader:
    """load_models through the catalog in settings.home."""

    def load(vqgan: str, clips: list[str], device: torch.device) -> Models:
        return load_models(vqgan, clips, device, Catalog(settings.home))

    return load


def models_key(settings: Settings, request: JobCreate) -> ModelsKey:
    """The (VQGAN, CLIP models) a request runs with."""
    clips = request.clip_models or settings.clip_models_for(request.model)
    return request.model or settings.model, tuple(clips)


class ModelCache:
    """Loads each model set once and keeps at most `size` of them (the default set stays)."""

    def __init__(
        self, load: ModelsLoader, device: torch.device, default: ModelsKey, size: int
    ) -> None:
        self._load = load
        self.device = device
        self.default = default
        self.size = size
        # (vqgan, clips) -> Models, least recently used first.
        self.loaded: OrderedDict[ModelsKey, Models] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, vqgan: str, clips: tuple[str, ...]) -> Models:
        """The loaded set, loading it (and evicting the least recently used) when needed."""
        key = (vqgan, clips)
        with self._lock:
            if key in self.loaded:
                self.loaded.move_to_end(key)
                return self.loaded[key]
            evictable = [other for other in self.loaded if other != self.default]
            evicted = False
            while evictable and len(self.loaded) >= self.size:
                del self.loaded[evictable.pop(0)]
                evicted = True
            if evicted:
                # What the evicted sets held is freed before the next set loads.
                gc.collect()
                if torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
            models = self.loaded[key] = self._load_unique(vqgan, clips)
            return models

    def for_job(self, job_id: str, key: ModelsKey) -> Models:
        """get(), a failure raised as ModelsNotLoaded with a message for the job's client."""
        vqgan, clips = key
        try:
            return self.get(vqgan, clips)
        except Exception as exc:
            names = f"{vqgan} / {', '.join(clips)}"
            logger.error("job %s: cannot load models %s: %s", job_id, names, exc)
            raise ModelsNotLoaded(f"cannot load models {names}: {public_message(exc)}") from exc

    def _load_unique(self, vqgan: str, clips: tuple[str, ...]) -> Models:
        """Load each CLIP model once; a name given twice shares the loaded critic."""
        unique = list(dict.fromkeys(clips))
        models = self._load(vqgan, unique, self.device)
        if len(unique) == len(clips):
            return models
        by_name = dict(zip(unique, models.critics, strict=True))
        return replace(models, critics=[by_name[name] for name in clips], clip_names=list(clips))
