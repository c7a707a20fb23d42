"""What the local halves of the commands (local_*.py) share and the cli_* modules must not import:
the torch device `--device` names."""

from __future__ import annotations

import torch

from artgen import devices
from artgen.cli_common import fail


def resolve_device(name: str) -> torch.device:
    """The torch device `--device name` means, or fail saying why it is not one here."""
    try:
        return devices.resolve_device(name)
    except devices.DeviceError as error:
        fail(f"--device {error}")
