"""Models: the taming VQGAN, CLIP critics, checkpoint reading and the model catalog.

Names are imported lazily so that `from artgen.models import ModelUnavailable` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "VQGAN": "artgen.models.vqgan",
    "VQGANConfig": "artgen.models.vqgan",
    "CheckpointError": "artgen.models.errors",
    "ModelUnavailable": "artgen.models.errors",
    "load_vqgan": "artgen.models.checkpoints",
    "read_state_dict": "artgen.models.checkpoints",
    "Critic": "artgen.models.clip",
    "Catalog": "artgen.models.catalog",
    "ModelInfo": "artgen.models.catalog",
    "UnknownModel": "artgen.models.catalog",
    "Models": "artgen.models.loading",
    "load_models": "artgen.models.loading",
    "random_models": "artgen.models.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'artgen.models' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
