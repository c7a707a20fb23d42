"""Which torch device a device name means: the one place the CLI and the worker resolve it."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device name that is not a device, or names one this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a named device must parse and, for CUDA, exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"{name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{name}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device
