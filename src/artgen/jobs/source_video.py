"""A restyle's uploaded source video: probed once, at validation, under the server's limits."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from artgen.jobs.submission import SourceVideo
from artgen.videos import VideoError, VideoLimits, probe


@dataclass(frozen=True)
class VideoUpload:
    """The bytes of a restyle's upload and its container, as the API sniffed it."""

    data: bytes
    container: str  # a key of job_files.SOURCE_VIDEO_NAMES: mp4, webm, gif


class InvalidVideo(ValueError):
    """The source video cannot be used: too large, too long, unreadable (`code` as videos.probe
    names it; the API answers 413 for video_too_large, else 422, naming `source_video`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def probe_upload(upload: VideoUpload, limits: VideoLimits) -> SourceVideo:
    """The upload with what it holds (frames capped by the server's limit, rate, size)."""
    with tempfile.TemporaryDirectory(prefix="artgen-upload-") as directory:
        path = Path(directory) / f"source.{upload.container}"
        path.write_bytes(upload.data)
        try:
            info = probe(path, limits)
        except VideoError as exc:
            raise InvalidVideo(exc.code, str(exc)) from exc
    frames = min(info.frames, limits.max_frames)
    return SourceVideo(
        upload.data, upload.container, frames, info.fps, width=info.width, height=info.height
    )
