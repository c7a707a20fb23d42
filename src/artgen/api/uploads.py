"""Bounded request bodies, multipart reading and image validation (before anything is stored)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from artgen.api.errors import ApiError, PayloadTooLarge, error_response
from artgen.jobs.source_video import VideoUpload
from artgen.videos import VideoLimits

# Room for the `params` JSON text and multipart boundaries on top of the file bytes.
BODY_OVERHEAD_BYTES = 1024 * 1024
# A job takes one init image and a handful of image prompts; more is an abuse.
MAX_FILES = 8
MAX_FIELDS = 16
CHUNK_BYTES = 64 * 1024
# Job parameters are small; a bigger JSON body is a mistake or an attack.
MAX_JSON_BYTES = 1024 * 1024

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def body_limit(max_upload_bytes: int) -> int:
    """The cap on a whole request body: the upload limit plus room for the form around it."""
    return max_upload_bytes + BODY_OVERHEAD_BYTES


class BodyLimitMiddleware:
    """Refuses a body over the cap: up front by Content-Length, else while it streams in."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _send_too_large(scope, receive, send, self.max_body_bytes)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge:
            # Raised outside a route's error handling (e.g. in a middleware): answer here.
            if started:
                raise
            await _send_too_large(scope, receive, send, self.max_body_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    error = PayloadTooLarge(limit)
    response = error_response(413, error.code, error.message, headers={"Connection": "close"})
    await response(scope, receive, send)


async def read_json_body(request: Request, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """A JSON request body, refused with 413 as soon as it passes `max_bytes`."""
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"JSON body is larger than {max_bytes} bytes; send images as multipart files",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> FormData:
    """The multipart form, with bounded field and file counts (files spool to disk past 1 MiB)."""
    try:
        return await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except ApiError:
        raise
    except StarletteHTTPException as exc:
        raise ApiError(
            400,
            "invalid_multipart",
            f"{exc.detail} (at most {MAX_FILES} files and {MAX_FIELDS} fields)",
        ) from exc


async def read_upload(upload: UploadFile, field: str, max_bytes: int) -> bytes:
    """An uploaded file's bytes, read in chunks and refused with 413 past `max_bytes`."""
    chunks = []
    total = 0
    while True:
        chunk = await upload.read(CHUNK_BYTES)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"{field}: file is larger than the limit of {max_bytes} bytes",
                field=field,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def sniff_format(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from the magic bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class ImageInfo:
    """What validation learnt about an accepted image."""

    format: str
    width: int
    height: int


def check_image(data: bytes, field: str, max_pixels: int) -> ImageInfo:
    """Accept only a whole PNG/JPEG/WebP within `max_pixels` (size read from the header first)."""
    if not data:
        raise ApiError(422, "invalid_image", f"{field}: the file is empty", field=field)
    sniffed = sniff_format(data)
    if sniffed is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{field}: not a PNG, JPEG or WebP image (judged by its content, not its name)",
            field=field,
        )
    # 1. Header only: Image.open reads the size without decoding pixels.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[sniffed]) as image:
                width, height = image.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise _too_many_pixels(field, max_pixels) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ApiError(
            422, "invalid_image", f"{field}: unreadable {sniffed} header", field=field
        ) from exc
    if width * height > max_pixels:
        raise _too_many_pixels(field, max_pixels, width, height)
    # 2. Full decode: catches truncated and corrupt data.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[sniffed]) as image:
                image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise _too_many_pixels(field, max_pixels) from exc
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ApiError(
            422,
            "invalid_image",
            f"{field}: the {sniffed} image is truncated or corrupt",
            field=field,
        ) from exc
    return ImageInfo(format=sniffed, width=width, height=height)


def _too_many_pixels(
    field: str, max_pixels: int, width: int | None = None, height: int | None = None
) -> ApiError:
    size = f" ({width}x{height})" if width is not None else ""
    return ApiError(
        422,
        "invalid_image",
        f"{field}: image is too large{size}; at most {max_pixels} pixels",
        field=field,
    )


async def read_image_upload(
    upload: UploadFile, field: str, max_bytes: int, max_pixels: int
) -> bytes:
    """Read, bound and validate one uploaded image; the checks run off the event loop."""
    data = await read_upload(upload, field, max_bytes)
    await run_in_threadpool(check_image, data, field, max_pixels)
    return data


def sniff_video(data: bytes) -> str | None:
    """mp4 (ISO base media: MP4/MOV), webm (Matroska/WebM) or gif from the magic bytes; None
    for anything else."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


def check_video(data: bytes, field: str) -> VideoUpload:
    """A whole upload that is an MP4/WebM/GIF by its content; else 422 empty, 415 not a video
    container. What it holds is probed by the service's validation (413 too large, 422 long)."""
    if not data:
        raise ApiError(422, "video_empty", f"{field}: the file is empty", field=field)
    container = sniff_video(data)
    if container is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{field}: not an MP4, WebM or GIF video (judged by its content, not its name)",
            field=field,
        )
    return VideoUpload(data, container)


async def read_source_video(
    values: Sequence[object], kind: str, limits: VideoLimits
) -> VideoUpload | None:
    """A restyle's `source_video` form field (at most one file, only for kind restyle), read
    under `limits.max_bytes`; None when absent."""
    if not values:
        return None
    field = "source_video"
    if len(values) > 1:
        raise ApiError(422, "validation_error", f"{field}: at most one file", field=field)
    upload = values[0]
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "validation_error", f"{field}: must be a file", field=field)
    if kind != "restyle":
        message = f'{field}: only a restyle job takes a video ("kind": "restyle")'
        raise ApiError(422, "validation_error", message, field=field)
    data = await read_upload(upload, field, limits.max_bytes)
    return check_video(data, field)
