"""CLI test setup: a CliRunner isolated from the caller's model cache and settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in an empty model cache, with no ARTGEN_* settings leaking in."""
    for name in ("ARTGEN_MODEL", "ARTGEN_CLIP_MODEL", "ARTGEN_DEVICE", "ARTGEN_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARTGEN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()
