"""What a worker reports when a step of an attempt raises: the exception as a Result."""

from __future__ import annotations

import gc
import logging
import traceback
from collections.abc import Callable
from typing import TypeVar

import torch

from artgen.jobs.model_cache import ModelsNotLoaded
from artgen.jobs.queue import InputsMissing
from artgen.jobs.reports import Outcome, Result

logger = logging.getLogger("artgen.jobs.worker")

T = TypeVar("T")

INTERNAL_ERROR = ("internal_error", "the generation failed unexpectedly")


class StoppedDuringSetup(Exception):
    """The job was canceled, superseded, timed out or handed back while being set up."""

    def __init__(self, result: Result | None) -> None:
        super().__init__("stopped during setup")
        self.result = result  # None: superseded (another attempt owns the job)


def guarded(label: str, attempt: int, action: Callable[[], T]) -> tuple[T | None, Result | None]:
    """(action(), None), or (None, the attempt's result for what it raised; None: superseded).

    Out of memory frees what the failed step held before returning."""
    try:
        return action(), None
    except ModelsNotLoaded as exc:
        return None, Result.failure(attempt, "model_unavailable", str(exc))
    except StoppedDuringSetup as exc:
        return None, exc.result
    except InputsMissing as exc:
        # The queue lost data: hand the job back; the API enqueues it again with its inputs.
        logger.warning("%s: %s", label, exc)
        return None, Result(attempt, Outcome.interrupted, iteration=0, lost=True)
    except torch.cuda.OutOfMemoryError:
        logger.warning("%s: GPU out of memory", label)
        message = "the GPU ran out of memory; try a smaller size"
        result = Result.failure(attempt, "gpu_out_of_memory", message)
    except MemoryError:
        logger.warning("%s: out of memory", label)
        message = "the worker ran out of memory; try a smaller size"
        result = Result.failure(attempt, "out_of_memory", message)
    except Exception:
        logger.error("%s failed:\n%s", label, traceback.format_exc())
        return None, Result.failure(attempt, *INTERNAL_ERROR)
    # Outside the except block the traceback, and the tensors its frames held, are gone.
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    return None, result
