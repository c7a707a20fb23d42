"""Video files in (MP4, WebM, animated GIF), with limits against hostile input; artgen.media
writes them.

Everything runs the ffmpeg binary that imageio-ffmpeg ships (`imageio_ffmpeg.get_ffmpeg_exe()`), as
a child process with a time limit: a file is checked against the limits on what its header claims
(size, duration, resolution) before anything is decoded, then decoded once to count its frames. A
process that runs past its limit is killed; none is left running when a call returns or raises.
"""

from __future__ import annotations

import math
import os
import re
import select
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import imageio_ffmpeg
from PIL import Image

# ffmpeg's header dump: "Duration: 00:00:02.00," and stream lines such as
# "Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 64x48 [SAR 1:1], 12 fps".
_INPUT_FORMAT = re.compile(r"^Input #0, (.+?), from ", re.MULTILINE)
# ffmpeg's demuxers of the accepted containers: MP4 (and MOV), WebM (Matroska), GIF.
_ACCEPTED_FORMATS = ("mov", "mp4", "webm", "matroska", "gif")
_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: (.*)$", re.MULTILINE)
_AUDIO_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: Audio: ", re.MULTILINE)
_SIZE = re.compile(r"(?<![\w/])([1-9]\d*)x([1-9]\d*)(?=[\s,\[]|$)")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)")
_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")
# Longer than ffmpeg's header parsing needs on any file that is not hostile.
_HEADER_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class VideoLimits:
    """What an input video may be; each limit is checked on the header, then while decoding."""

    max_bytes: int = 50 * 2**20
    max_seconds: float = 60.0
    max_frames: int = 600
    max_width: int = 1024
    max_height: int = 1024
    decode_timeout_s: float = 60.0  # the longest one decoder run may take


class VideoError(ValueError):
    """A video that is refused; `code` is one of video_invalid, video_too_large, video_too_long,
    video_empty, video_timeout."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VideoInfo:
    """A checked video: its size, frame rate, decoded frame count, duration and audio."""

    width: int
    height: int
    fps: float
    frames: int
    seconds: float
    has_audio: bool


def ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _run(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg with `arguments`; kill it past `timeout` seconds (VideoError video_timeout)."""
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", *arguments],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )  # subprocess.run kills and reaps the child when the timeout expires
    except subprocess.TimeoutExpired:
        raise VideoError(
            "video_timeout",
            f"decoding the video took longer than {timeout:g} s; send a shorter or smaller video",
        ) from None


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    fps: float
    seconds: float | None  # None: the container does not say
    has_audio: bool


def _read_header(path: Path, limits: VideoLimits) -> _Header:
    """What the file's header claims (ffmpeg -i, nothing decoded); VideoError when it is not a
    video ffmpeg understands."""
    dump = _run(["-i", str(path)], min(limits.decode_timeout_s, _HEADER_TIMEOUT_S)).stderr
    container = _INPUT_FORMAT.search(dump)
    formats = container.group(1).split(",") if container else []
    stream = _VIDEO_STREAM.search(dump)
    if stream is None or not any(name in _ACCEPTED_FORMATS for name in formats):
        raise VideoError(
            "video_invalid",
            "the file is not a video that can be read (send an MP4, WebM or animated GIF)",
        )
    size = _SIZE.search(stream.group(1))
    if size is None:
        raise VideoError("video_invalid", "the video does not say its width and height")
    rates = {
        kind: float(value) * (1000 if kilo else 1)
        for value, kilo, kind in _RATE.findall(stream.group(1))
    }
    fps = rates.get("fps") or rates.get("tbr") or 0.0
    duration = _DURATION.search(dump)
    seconds = None
    if duration is not None:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    return _Header(
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=fps,
        seconds=seconds,
        has_audio=_AUDIO_STREAM.search(dump) is not None,
    )


def _check_claims(header: _Header, limits: VideoLimits) -> None:
    if header.width > limits.max_width or header.height > limits.max_height:
        raise VideoError(
            "video_too_large",
            f"the video is {header.width}x{header.height}; at most "
            f"{limits.max_width}x{limits.max_height}",
        )
    if header.seconds is not None and header.seconds > limits.max_seconds:
        raise VideoError(
            "video_too_long",
            f"the video lasts {header.seconds:.1f} s; at most {limits.max_seconds:g} s (trim it)",
        )
    if not (math.isfinite(header.fps) and 0 < header.fps <= 1000):
        raise VideoError("video_invalid", "the video does not say a usable frame rate")


def _too_many_frames(limits: VideoLimits) -> VideoError:
    return VideoError(
        "video_too_long",
        f"the video has more than {limits.max_frames} frames; at most {limits.max_frames} "
        "(trim it or lower its frame rate)",
    )


def probe(path: Path, limits: VideoLimits) -> VideoInfo:
    """Check `path` against `limits` and count its frames by decoding them (under the time
    limit). Raises VideoError for a file that is too big, too long, not a video, truncated or
    without frames."""
    size = path.stat().st_size
    if size == 0:
        raise VideoError("video_empty", "the file is empty; send a video with at least one frame")
    if size > limits.max_bytes:
        raise VideoError(
            "video_too_large",
            f"the video is {size} bytes; at most {limits.max_bytes} bytes",
        )
    header = _read_header(path, limits)
    _check_claims(header, limits)
    # Decode (to nothing) at most one frame past the limit; a decoding error ends it (-xerror).
    decoded = _run(
        [
            "-xerror", "-noautorotate", "-i", str(path), "-map", "0:v:0",
            "-frames:v", str(limits.max_frames + 1), "-f", "null", "-",
        ],
        limits.decode_timeout_s,
    )  # fmt: skip
    if decoded.returncode != 0:
        raise VideoError(
            "video_invalid",
            "the video could not be decoded: is the file complete (not truncated or damaged)?",
        )
    counts = _FRAME_COUNT.findall(decoded.stderr)
    frames = int(counts[-1]) if counts else 0
    if frames == 0:
        raise VideoError("video_empty", "the video has no frames")
    if frames > limits.max_frames:
        raise _too_many_frames(limits)
    seconds = header.seconds if header.seconds is not None else frames / header.fps
    return VideoInfo(
        width=header.width,
        height=header.height,
        fps=header.fps,
        frames=frames,
        seconds=seconds,
        has_audio=header.has_audio,
    )


class SequentialFrames:
    """The frames of a video as PIL images, decoded lazily and in order by one ffmpeg process
    (a restyle's FrameSource). `size` (width, height) resizes them; by default the video's own."""

    def __init__(
        self, path: Path, limits: VideoLimits, size: tuple[int, int] | None = None
    ) -> None:
        self.path, self.limits, self.size = Path(path), limits, size
        self._process: subprocess.Popen[bytes] | None = None
        self._next = 0  # index of the frame the process gives next
        self._last: Image.Image | None = None
        self._last_index = -1
        self._frame_size = (0, 0)  # (width, height) of the decoded frames, known once started
        self._frame_bytes = 0

    def __enter__(self) -> SequentialFrames:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        header = _read_header(self.path, self.limits)
        _check_claims(header, self.limits)
        width, height = self.size or (header.width, header.height)
        self._frame_bytes = width * height * 3
        self._frame_size = (width, height)
        arguments = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-noautorotate",
            "-i", str(self.path), "-map", "0:v:0", "-frames:v", str(self.limits.max_frames),
            "-vf", f"scale={width}:{height}:flags=lanczos", "-pix_fmt", "rgb24",
            "-f", "rawvideo", "pipe:1",
        ]  # fmt: skip
        return subprocess.Popen(
            arguments, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    def frame(self, index: int) -> Image.Image:
        """Frame `index` (0-based); indices must not go back (the same one again is fine)."""
        if index == self._last_index and self._last is not None:
            return self._last.copy()
        if index < self._last_index:
            raise ValueError(f"frames are read in order: asked {index} after {self._last_index}")
        if index >= self.limits.max_frames:
            raise _too_many_frames(self.limits)
        if self._process is None:
            self._process = self._start()
        while self._next <= index:
            data = self._read_frame()
            self._next += 1
        image = Image.frombytes("RGB", self._frame_size, data)
        self._last, self._last_index = image, index
        return image.copy()

    def _read_frame(self) -> bytes:
        """The next raw frame; VideoError when the video ends first or the decoder stalls."""
        assert self._process is not None and self._process.stdout is not None
        pipe = self._process.stdout.fileno()
        chunks: list[bytes] = []
        missing = self._frame_bytes
        while missing:
            ready, _, _ = select.select([pipe], [], [], self.limits.decode_timeout_s)
            if not ready:
                self.close()
                raise VideoError(
                    "video_timeout",
                    f"the decoder gave no frame for {self.limits.decode_timeout_s:g} s",
                )
            chunk = os.read(pipe, min(missing, 1 << 20))
            if not chunk:
                self.close()
                raise VideoError("video_invalid", f"the video ended before frame {self._next}")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Stop the decoder (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdout is not None:
            process.stdout.close()
        process.kill()
        process.wait()


def has_audio(path: Path) -> bool:
    """Whether the video file at `path` has an audio track (ffmpeg's header dump lists one)."""
    dump = _run(["-i", str(path)], _HEADER_TIMEOUT_S).stderr
    return _AUDIO_STREAM.search(dump) is not None
