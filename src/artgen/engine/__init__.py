"""The generation engine: params, options, prompts, cutouts, Generation, batches and run.

Names are imported lazily so that `from artgen.engine import GenerationParams` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "GenerationParams": "artgen.engine.params",
    "ScheduledPrompts": "artgen.engine.params",
    "PromptSpec": "artgen.engine.prompts",
    "parse_prompts": "artgen.engine.prompts",
    "Generation": "artgen.engine.generate",
    "StepInfo": "artgen.engine.stepping",
    "StepResult": "artgen.engine.generate",
    "run": "artgen.engine.stepping",
    "step_batch": "artgen.engine.stepping",
    "BatchGeneration": "artgen.engine.batch",
    "EngineOptions": "artgen.engine.options",
    "FastCutouts": "artgen.engine.cutouts",
    "ReferenceCutouts": "artgen.engine.cutouts",
    "to_pil": "artgen.engine.images",
    "from_pil": "artgen.engine.images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'artgen.engine' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
