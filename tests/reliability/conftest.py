"""Fixtures for the reliability tests: in-process apps on the tiny CPU models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from artgen.api.app import create_app
from support import make_settings


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build in-process servers with custom settings (worker off unless asked); closed after."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        overrides.setdefault("worker", False)
        client = TestClient(create_app(make_settings(tmp_path / f"app{len(clients)}", **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)
