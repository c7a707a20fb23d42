"""Resumable, checked downloads of model files."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from artgen.models.checkpoints import ModelUnavailable

# Progress callback: (file name, bytes done, total bytes or None when the server does not say).
Progress = Callable[[str, int, int | None], None]

CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    destination: Path,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` into `<destination>.part`, resuming it with an HTTP Range; returns that path.

    The caller checks the file and renames it, so `destination` only ever holds complete files.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "artgen"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:
            # The partial file is already complete (or longer than the remote one): start over.
            partial.unlink()
            return download_file(url, destination, progress, timeout)
        message = f"download of {url} failed: HTTP {error.code} {error.reason}"
        raise ModelUnavailable(message) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ModelUnavailable(f"cannot reach {url} ({reason})") from None
    with response:
        resumed = response.status == 206
        if not resumed:
            done = 0  # The server ignored the Range header: rewrite from the start.
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with partial.open("ab" if resumed else "wb") as handle:
            if progress is not None:
                progress(destination.name, done, total)
            try:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(destination.name, done, total)
            except (OSError, http.client.HTTPException) as error:
                raise ModelUnavailable(
                    f"download of {url} was interrupted after {done} bytes ({error}); "
                    f"run the same command again to resume from {partial}"
                ) from None
    if total is not None and done != total:
        raise ModelUnavailable(
            f"download of {url} stopped at {done} of {total} bytes; "
            f"run the same command again to resume from {partial}"
        )
    return partial
