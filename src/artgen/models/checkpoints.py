"""Read taming-transformers / pytorch-lightning 1.x checkpoints safely on current torch.

Checkpoints are loaded with `weights_only=True`. Lightning pickles some of its own classes into them
(e.g. `ModelCheckpoint` as a key of `callbacks`); those names are replaced by inert stub classes for
the duration of the call. Any other unknown global is refused: nothing is unpickled blindly.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core import multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray  # type: ignore[no-redef]

# Raised here, defined torch-free (the CLI catches them); importers may take them from here.
from artgen.models.errors import CheckpointError
from artgen.models.errors import ModelUnavailable as ModelUnavailable
from artgen.models.vqgan import VQGAN, VQGANConfig

# Training-time classes that real taming checkpoints pickle; stubbing them loses nothing we use.
STUBBED_MODULE_PREFIXES = ("pytorch_lightning.", "lightning.", "lightning_fabric.")
FIRST_STAGE_PREFIX = "first_stage_model."
MAX_LISTED = 5


class _PickledStub:
    """Inert stand-in for a pickled training-time class: keeps whatever state it was given."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _PickledStub:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stub_class(full_name: str) -> type:
    """A `_PickledStub` subclass that claims to be `full_name`."""
    module, _, qualname = full_name.rpartition(".")
    return type(qualname, (_PickledStub,), {"__module__": module, "__qualname__": qualname})


def _numpy_global(full_name: str) -> Any | None:
    """Numpy scalar/array reconstructors that Lightning metrics may leave in a checkpoint."""
    known = {
        "numpy.core.multiarray.scalar": multiarray.scalar,
        "numpy._core.multiarray.scalar": multiarray.scalar,
        "numpy.core.multiarray._reconstruct": multiarray._reconstruct,
        "numpy._core.multiarray._reconstruct": multiarray._reconstruct,
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
    }
    if full_name in known:
        return known[full_name]
    prefix = "numpy.dtypes."
    if full_name.startswith(prefix) and full_name.endswith("DType"):
        return getattr(np.dtypes, full_name[len(prefix) :], None)
    return None


def _numpy_dtype_classes() -> list[Any]:
    """`np.dtype(...)` builds instances of these classes; unpickling a dtype needs them too."""
    return [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]


def _allowed_globals(full_name: str, path: Path) -> list[Any]:
    """The safe objects to allow for a pickled global name, or a CheckpointError."""
    if full_name.startswith(STUBBED_MODULE_PREFIXES):
        return [(_stub_class(full_name), full_name)]
    numpy_object = _numpy_global(full_name)
    if numpy_object is not None:
        extra = _numpy_dtype_classes() if full_name == "numpy.dtype" else []
        return [(numpy_object, full_name), *extra]
    raise CheckpointError(
        f"{path}: refusing to unpickle `{full_name}`: it is not a tensor, a Lightning class or a "
        "numpy value, so the file may run code when loaded"
    )


def _short(error: BaseException) -> str:
    """The informative line of an exception message, without torch's long advice paragraphs."""
    message = str(error).strip()
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    if unpickler:
        message = unpickler.group(1)
    text = message.splitlines()[0].split(". ")[0] if message else type(error).__name__
    return text[:200]


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"{path}: corrupt or truncated checkpoint ({_short(error)})")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_checkpoint(path: str | Path) -> Any:
    """Unpickle a torch checkpoint with `weights_only=True`, stubbing Lightning's classes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if _is_torchscript(path):
        raise CheckpointError(f"{path}: is a TorchScript archive, not a checkpoint of weights")
    allowed: dict[str, list[Any]] = {}
    if zipfile.is_zipfile(path):
        # Finds every global up front (one pass over the pickle, no tensors read).
        try:
            for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)):
                allowed[name] = _allowed_globals(name, path)
        except CheckpointError:
            raise
        except Exception as error:
            raise _corrupt(path, error) from None
    # The legacy (non-zip) format is scanned by trying: each refusal names the next global.
    for _ in range(64):
        try:
            safe = [item for items in allowed.values() for item in items]
            with torch.serialization.safe_globals(safe):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            match = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(error))
            refused = (match.group(1) or match.group(2)) if match else None
            if not refused or refused in allowed:
                raise _corrupt(path, error) from None
            allowed[refused] = _allowed_globals(refused, path)
    raise CheckpointError(f"{path}: too many pickled classes to stub")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The VQGAN weights of a taming checkpoint: Lightning `state_dict` or bare dict, `loss.*` and
    other stages dropped, `first_stage_model.` stripped."""
    path = Path(path)
    data = read_checkpoint(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not a dict of weights")
    weights = {str(k): v for k, v in data.items() if isinstance(v, Tensor)}
    if not weights:
        raise CheckpointError(f"{path}: contains no tensors (no `state_dict`)")
    if any(key.startswith(FIRST_STAGE_PREFIX) for key in weights):
        # Net2Net checkpoints: keep only the first stage, drop the transformer and cond stage.
        weights = {
            key[len(FIRST_STAGE_PREFIX) :]: value
            for key, value in weights.items()
            if key.startswith(FIRST_STAGE_PREFIX)
        }
    return {key: value for key, value in weights.items() if not key.startswith("loss.")}


def read_config(path: str | Path) -> VQGANConfig:
    """Parse a taming YAML config file, naming the file in any error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: cannot be read ({_short(error)})") from None
    try:
        return VQGANConfig.from_yaml(text)
    except yaml.YAMLError as error:
        raise CheckpointError(f"{path}: not valid YAML ({_short(error)})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{path}: not a VQGAN config ({_short(error)})") from None


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def check_state_dict(
    model: VQGAN, weights: dict[str, Tensor], path: Path, config_path: Path
) -> None:
    """Raise a short CheckpointError listing missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    mismatched = [
        f"{key} {tuple(weights[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in weights and weights[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} wrong shapes, file vs config ({_listed(mismatched)})")
    if problems:
        raise CheckpointError(
            f"{path}: does not match the architecture of {config_path.name}: " + "; ".join(problems)
        )


def load_vqgan(
    config_path: str | Path, checkpoint_path: str | Path, device: torch.device | str = "cpu"
) -> VQGAN:
    """Build the VQGAN described by a taming YAML and load its checkpoint strictly."""
    config_path, checkpoint_path = Path(config_path), Path(checkpoint_path)
    config = read_config(config_path)
    weights = read_state_dict(checkpoint_path)
    with torch.device("meta"):
        model = VQGAN(config)
    check_state_dict(model, weights, checkpoint_path, config_path)
    # assign=True adopts the loaded tensors instead of allocating and copying a second set.
    model.load_state_dict(weights, strict=True, assign=True)
    return model.float().to(device).eval().requires_grad_(False)
