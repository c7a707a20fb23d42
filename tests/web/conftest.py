"""Browser test fixtures: a real `artgen serve --model tiny` process and headless Chromium."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Set to the URL of a running server to test against it instead of starting one.
BASE_URL_ENV = "ARTGEN_WEB_BASE_URL"
READY_TIMEOUT_S = 90.0
API_KEY = "web-test-key-123"


def server_command(port: int, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The CLI's `serve` when present, else uvicorn on the app factory with ARTGEN_ settings."""
    env = {**os.environ, "ARTGEN_MODEL": "tiny", "ARTGEN_DATA_DIR": str(data_dir)}
    env["ARTGEN_DEVICE"] = "cpu"
    # One torch thread: on a small shared CPU more threads contend and run several times slower.
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    if importlib.util.find_spec("artgen.cli") and importlib.util.find_spec("artgen.api.server"):
        # Same as the `artgen` console script, with this interpreter.
        command = [sys.executable, "-c", "from artgen.cli import app; app()", "serve"]
        command += ["--model", "tiny"]
        command += ["--port", str(port), "--data-dir", str(data_dir), "--device", "cpu"]
        return command, env
    command = [sys.executable, "-m", "uvicorn", "--factory", "artgen.api.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return command, env


def wait_ready(base_url: str, process: subprocess.Popen[bytes] | None, log: Path) -> None:
    """Poll /readyz until it answers 200; fail with the server's log if it dies or stalls."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log.exists() else ""
    pytest.fail(f"server not ready after {READY_TIMEOUT_S:.0f}s:\n{tail}")


def start_server(tmp: Path, extra_env: dict[str, str]) -> Iterator[str]:
    """Run the server as a subprocess on a free port; yield its base URL; stop it."""
    port = free_port()
    command, env = server_command(port, tmp / "data")
    env.update(extra_env)
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running artgen server with the tiny model."""
    if os.environ.get(BASE_URL_ENV):
        base_url = os.environ[BASE_URL_ENV].rstrip("/")
        wait_ready(base_url, None, Path("/dev/null"))
        yield base_url
        return
    yield from start_server(tmp_path_factory.mktemp("artgen-web"), {})


@pytest.fixture(scope="session")
def api_key() -> str:
    """The key the keyed server accepts."""
    return API_KEY


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second server that requires the X-API-Key header (key: API_KEY)."""
    env = {"ARTGEN_API_KEYS": API_KEY}
    yield from start_server(tmp_path_factory.mktemp("artgen-web-keys"), env)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright, one per test module: Playwright's sync API
    keeps an asyncio loop running in this thread while it is open, so a later test file run by
    the same pytest-xdist worker could not call asyncio.run()."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, base_url: str) -> Iterator[object]:
    """A fresh browser page on `base_url`; fails the test on JavaScript errors."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    """A fresh page on the server's web UI."""
    yield from open_page(browser, server)


@pytest.fixture
def keyed_page(browser, keyed_server: str) -> Iterator[object]:
    """A fresh page on the server that requires an API key."""
    yield from open_page(browser, keyed_server)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
