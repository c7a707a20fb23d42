"""Client tests run against a real `artgen serve --model tiny` process (one per test module)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support import free_port

# The server accepts these keys; each sees only its own jobs.
API_KEYS = ("key-alpha", "key-beta")


@dataclass(frozen=True)
class RunningServer:
    """A live server: its URL, the keys it accepts and its data dir."""

    url: str
    api_key: str
    other_key: str
    data_dir: Path


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server never became ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`artgen serve --model tiny` on a free port with API keys, stopped after the module."""
    root = tmp_path_factory.mktemp("client-server")
    port = free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "ARTGEN_HOME": str(root / "home"),
        "ARTGEN_API_KEYS": ",".join(API_KEYS),
    }
    command = [sys.executable, "-m", "artgen", "serve", "--model", "tiny", "--device", "cpu"]
    command += ["--port", str(port), "--data-dir", str(root / "data")]
    log = root / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield RunningServer(url, API_KEYS[0], API_KEYS[1], root / "data")
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
