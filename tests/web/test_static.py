"""The page's static files as the app serves them (no browser needed)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from artgen.api.app import create_app
from support import make_settings


def test_favicon_and_page_are_served(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, worker=False))) as client:
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
        page = client.get("/")
        assert page.status_code == 200 and 'rel="icon" href="favicon.ico"' in page.text
