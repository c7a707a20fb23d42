"""Helpers shared by every test directory: ports, polling, a private redis-server, tiny settings.

tests/ is on sys.path (pytest puts the root conftest's folder there), so `import support` works
from any test module.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artgen.config import Settings

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy and return its value; fail the test after timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for an in-process server on the tiny CPU models, everything under tmp_path."""
    values: dict[str, Any] = {
        "model": "tiny",
        "device": "cpu",
        "data_dir": tmp_path / "data",
        "home": tmp_path / "home",
        "lease_seconds": 30.0,
        "checkpoint_every": 5,
    }
    values.update(overrides)
    return Settings(**values)


class RedisProcess:
    """A private redis-server without persistence: a restart comes back empty."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its redis:// URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again) on the same port and wait until it answers."""
        assert REDIS_SERVER is not None, "no redis-server binary"
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL it (its data is gone: nothing was persisted)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def small_job(**overrides: Any) -> dict[str, Any]:
    """A job body that runs in well under a second on the tiny models."""
    body: dict[str, Any] = {
        "prompts": "a red apple:1 | blur:-0.5",
        "width": 32,
        "height": 32,
        "iterations": 4,
        "cutn": 4,
        "augment": False,
        "seed": 1,
        "preview_every": 2,
    }
    body.update(overrides)
    return body


def image_bytes(
    size: tuple[int, int] = (32, 32), fmt: str = "PNG", color: str | tuple[int, ...] = "red"
) -> bytes:
    """A small real image file in `fmt`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()
