"""Fixtures for the API tests: apps on tiny CPU models (with or without a worker)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apitools import wait_ready
from fastapi.testclient import TestClient

from artgen.api.app import create_app
from artgen.api.routes.legacy import LegacyDefaults
from support import make_settings


@pytest.fixture(scope="session")
def worker_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One server with an embedded worker on the tiny models, shared by the session."""
    tmp_path = tmp_path_factory.mktemp("api")
    app = create_app(make_settings(tmp_path))
    # The seed's endpoints run 100 iterations of 64 cutouts; tests keep the shape, not the cost.
    app.state.legacy_defaults = LegacyDefaults(iterations=4, cutn=2, preview_every=2)
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def idle_client(tmp_path: Path) -> Iterator[TestClient]:
    """A server without a worker: jobs stay queued; for validation and limits."""
    app = create_app(make_settings(tmp_path, worker=False))
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build servers with custom settings (worker off unless asked); closed at the end."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        overrides.setdefault("worker", False)
        sub = tmp_path / f"app{len(clients)}"
        client = TestClient(create_app(make_settings(sub, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)
