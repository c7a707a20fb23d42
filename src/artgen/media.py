"""The files that leave a generation, for the CLI and the service alike: PNG (one metadata
schema, one writer, one reader), JPEG conversion and H.264 MP4 writing.

Text chunks of an artgen PNG (the schema `artgen generate --params-from` reads back):
  prompt      the text prompts, as given ("a castle:1 | fog:-0.5")
  seed        the seed actually used, in decimal
  parameters  JSON object, sorted keys: every GenerationParams field with the seed used, plus
              "model" and "clip_models" (the names the generation ran with), and whatever else the
              writer knows (the service: "video", "preview_every"; the CLI: "init_image",
              "image_prompts" paths, "loss")
  Software    "artgen <version>"
PNGs written by the service before this schema carried the JSON under "params" and the prompts
as "prompt"; read_parameters gives them in this schema.

MP4s are H.264 yuv420p at any fps, odd sides padded (never scaled), streamed one frame at a time
to imageio-ffmpeg's ffmpeg (memory stays flat however long the video), written to a temporary
file and renamed into place.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import imageio_ffmpeg
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from artgen import __version__
from artgen.videos import has_audio

logger = logging.getLogger(__name__)

PARAMETERS_KEY = "parameters"
# Where older artgen PNGs kept the same JSON (the service's writer before this module).
LEGACY_PARAMETERS_KEYS = ("params",)


def png_text(parameters: Mapping[str, Any], seed: int) -> dict[str, str]:
    """The text chunks of an artgen PNG for a generation with `parameters` and the `seed` used."""
    recorded = {**parameters, "seed": seed}
    prompt = recorded.get("prompt", recorded.get("prompts", ""))
    return {
        "prompt": prompt if isinstance(prompt, str) else " | ".join(map(str, prompt)),
        "seed": str(seed),
        PARAMETERS_KEY: json.dumps(recorded, sort_keys=True),
        "Software": f"artgen {__version__}",
    }


def encode_png(
    image: Image.Image, text: Mapping[str, str] | None = None, compress_level: int = 6
) -> bytes:
    """Encode `image` as an RGB PNG carrying the text chunks `text`."""
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def write_png(image: Image.Image, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Write `encode_png(image, text)` to `path` atomically (a temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(encode_png(image, text))
    temporary.replace(path)


class NoParameters(ValueError):
    """The PNG carries no artgen parameters, or they are not a JSON object."""


def read_parameters(image: Image.Image) -> dict[str, Any]:
    """The parameters JSON object an artgen PNG carries; NoParameters when it has none."""
    text: Mapping[str, str] = getattr(image, "text", None) or {}
    for key in (PARAMETERS_KEY, *LEGACY_PARAMETERS_KEYS):
        if key in text:
            raw = text[key]
            break
    else:
        raise NoParameters("carries no artgen parameters (not made by artgen?)")
    try:
        recorded = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise NoParameters("its artgen parameters are not valid JSON") from None
    if not isinstance(recorded, dict):
        raise NoParameters("its artgen parameters are not a JSON object")
    # Older service PNGs name the text prompts "prompt" (the request's alias), maybe as a list.
    if "prompts" not in recorded and "prompt" in recorded:
        prompt = recorded.pop("prompt")
        recorded["prompts"] = prompt if isinstance(prompt, str) else " | ".join(map(str, prompt))
    return recorded


JPEG_QUALITY = 90


def png_to_jpeg(png: bytes | Path | BinaryIO, quality: int = JPEG_QUALITY) -> bytes:
    """A stored PNG (its bytes, path or open file) as JPEG (the API's ?format=jpeg answer)."""
    source = io.BytesIO(png) if isinstance(png, bytes) else png
    with Image.open(source) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# Containers that take H.264 (what Mp4Writer can write).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")


# The source's audio padded with silence and cut where the video ends: plain `-shortest` cut at the
# AAC stream's end, a little before an equally long video's, and dropped its last frame.
AUDIO_TO_VIDEO_LENGTH = ["-af", "apad", "-shortest"]


class Mp4Writer:
    """An H.264 video at `path` written frame by frame: ffmpeg starts with the first frame, each
    frame is piped to it as it comes, and the file appears (renamed from a temporary one) on
    `close()`. With `audio_from`, that file's audio track (when it has one) is muxed in as AAC,
    cut to the video's length. Without frames nothing is written. Use it as a context manager:
    it closes on success and discards the partial file on an exception."""

    def __init__(self, path: Path, fps: float, *, audio_from: Path | None = None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.audio_from = audio_from
        self.frames = 0
        self._partial = self.path.with_name(f".{self.path.name}.partial{self.path.suffix}")
        self._shape: tuple[int, ...] | None = None
        self._encoder: Generator[Any, Any, Any] | None = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.discard()

    def append(self, frame: np.ndarray | Image.Image) -> None:
        """Add one RGB frame: a PIL image or uint8 (H, W, 3), every one the first one's size."""
        pixels = _even(_rgb(frame))
        if self._encoder is None:
            self._encoder = self._start(pixels.shape)
            self._shape = pixels.shape
        elif pixels.shape != self._shape:
            raise ValueError(f"every frame must have the first frame's size, got {pixels.shape}")
        try:
            self._encoder.send(np.ascontiguousarray(pixels))
        except BaseException:
            self.discard()
            raise
        self.frames += 1

    def _start(self, shape: tuple[int, ...]) -> Generator[Any, Any, Any]:
        audio = None
        if self.audio_from is not None and has_audio(Path(self.audio_from)):
            audio = str(self.audio_from)
        faststart = ["-movflags", "+faststart"] if self.path.suffix.lower() != ".mkv" else []
        encoder: Generator[Any, Any, Any] = imageio_ffmpeg.write_frames(
            str(self._partial), (shape[1], shape[0]), fps=self.fps, codec="libx264",
            pix_fmt_out="yuv420p", quality=8, macro_block_size=1, audio_path=audio,
            audio_codec="aac" if audio else None,
            output_params=[*faststart, *(AUDIO_TO_VIDEO_LENGTH if audio else [])],
        )  # fmt: skip
        encoder.send(None)  # start ffmpeg
        return encoder

    def close(self) -> int:
        """Finish the file and rename it onto `path`; the number of frames written."""
        encoder, self._encoder = self._encoder, None
        if encoder is None:
            return self.frames
        try:
            encoder.close()
            os.replace(self._partial, self.path)
        except BaseException:
            self._partial.unlink(missing_ok=True)
            raise
        return self.frames

    def discard(self) -> None:
        """Stop ffmpeg and remove the partial file (nothing is written at `path`)."""
        encoder, self._encoder = self._encoder, None
        try:
            if encoder is not None:
                encoder.close()
        except Exception:  # the file is being thrown away: a failing ffmpeg changes nothing
            logger.warning("video writer did not close cleanly", exc_info=True)
        finally:
            self._partial.unlink(missing_ok=True)


def write_mp4(
    frames: Iterable[np.ndarray | Image.Image],
    path: Path,
    fps: float,
    *,
    audio_from: Path | None = None,
) -> int:
    """Write `frames` through an Mp4Writer, pulled one at a time; the number of frames written."""
    with Mp4Writer(path, fps, audio_from=audio_from) as writer:
        for frame in frames:
            writer.append(frame)
    return writer.frames


class Mp4Recording:
    """An MP4 recorded into a temporary directory and handed back as bytes (the service's
    timelapse: the store, not this object, decides where it lives)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.frames = 0
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._writer: Mp4Writer | None = None

    def append(self, frame: np.ndarray | Image.Image) -> None:
        """Add one RGB frame; the temporary file and ffmpeg start with the first."""
        if self._writer is None:
            self._directory = tempfile.TemporaryDirectory(prefix="artgen-video-")
            self._writer = Mp4Writer(Path(self._directory.name) / "video.mp4", self.fps)
        self._writer.append(frame)
        self.frames += 1

    def finish(self) -> bytes | None:
        """Close the file and return its bytes (None without frames); the temporary file goes."""
        if self._writer is None:
            return None
        try:
            self._writer.close()
            return self._writer.path.read_bytes()
        finally:
            self.discard()

    def discard(self) -> None:
        """Stop ffmpeg and remove the temporary directory (an attempt that did not succeed)."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.discard()
        finally:
            if self._directory is not None:
                self._directory.cleanup()
                self._directory = None


def _rgb(frame: np.ndarray | Image.Image) -> np.ndarray:
    pixels = np.asarray(frame.convert("RGB") if isinstance(frame, Image.Image) else frame)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"frames must be RGB uint8 (H, W, 3), got {pixels.dtype} {pixels.shape}")
    return pixels


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad an (H, W, 3) frame to even sides (yuv420p needs them) by repeating the last row and
    column; nothing is scaled."""
    height, width = frame.shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    return np.pad(frame, pad, mode="edge") if height % 2 or width % 2 else frame
