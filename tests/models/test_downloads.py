"""downloads.download_file: resumable (HTTP Range) downloads into a .part file, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from artgen.models.checkpoints import ModelUnavailable
from artgen.models.downloads import CHUNK_BYTES, download_file, sha256_file


def test_interrupted_download_resumes_on_the_next_call(tmp_path: Path, server) -> None:
    body = bytes(range(256)) * 800
    server.files = {"/f.bin": body}
    server.cut_after = 50_000
    destination = tmp_path / "f.bin"
    with pytest.raises(ModelUnavailable, match="run the same command again to resume"):
        download_file(f"{server.url}/f.bin", destination)
    assert (tmp_path / "f.bin.part").stat().st_size == 50_000
    assert download_file(f"{server.url}/f.bin", destination).read_bytes() == body
    assert server.ranges == [None, "bytes=50000-"]


def test_download_restarts_when_the_server_ignores_range(tmp_path: Path, server) -> None:
    body = b"0123456789" * 1000
    server.files = {"/f.bin": body}
    server.honour_range = False
    partial = tmp_path / "f.bin.part"
    partial.write_bytes(b"stale bytes")
    done = download_file(f"{server.url}/f.bin", tmp_path / "f.bin")
    assert done == partial and partial.read_bytes() == body


def test_unreachable_server_is_model_unavailable(tmp_path: Path, server) -> None:
    with pytest.raises(ModelUnavailable, match="HTTP 404"):
        download_file(f"{server.url}/absent", tmp_path / "absent")


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    body = bytes(range(256)) * (CHUNK_BYTES // 256 + 7)  # more than one chunk
    path.write_bytes(body)
    assert sha256_file(path) == hashlib.sha256(body).hexdigest()
