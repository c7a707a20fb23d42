"""devices.resolve_device: the one resolver the CLI and the worker share."""

from __future__ import annotations

import pytest
import torch

from artgen.devices import DeviceError, resolve_device


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("toaster", "'toaster' is not a device; use auto, cpu, cuda or cuda:N"),
        ("cuda:64", "cuda:64: "),  # no CUDA here, or not 65 devices
    ],
)
def test_a_device_that_is_not_here_is_refused_naming_it(name: str, message: str) -> None:
    with pytest.raises(DeviceError, match="^" + message.replace("(", r"\(")):
        resolve_device(name)
