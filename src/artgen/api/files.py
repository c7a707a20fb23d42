"""Sending a job's stored files: opened once, streamed, PNG or JPEG."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fastapi import Response
from fastapi.responses import StreamingResponse

from artgen.api.errors import ApiError
from artgen.media import png_to_jpeg

STREAM_CHUNK_BYTES = 64 * 1024


def open_stored_file(job_id: str, path: Path) -> BinaryIO:
    """The file opened once (a DELETE may remove it at any moment); 404 when it is gone."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise deleted(job_id) from None


def deleted(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"job {job_id} was deleted")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(STREAM_CHUNK_BYTES):
            yield chunk


def file_response(handle: BinaryIO, media_type: str, headers: dict[str, str]) -> Response:
    """Stream an open file: once open, a DELETE that unlinks it no longer cuts the body short."""
    size = os.fstat(handle.fileno()).st_size
    return StreamingResponse(
        _chunks(handle), media_type=media_type, headers={**headers, "Content-Length": str(size)}
    )


def image_response(handle: BinaryIO, image_format: str, headers: dict[str, str]) -> Response:
    """A stored PNG as PNG (streamed from the open file) or converted to JPEG."""
    if image_format == "jpeg":
        with handle:
            return Response(png_to_jpeg(handle), media_type="image/jpeg", headers=headers)
    return file_response(handle, "image/png", headers)
