"""artgen.jobs.source_video: a restyle's upload probed once, under the server's limits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from artgen.jobs.source_video import InvalidVideo, VideoUpload, probe_upload
from artgen.videos import VideoLimits


def _clip(path: Path) -> bytes:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi"]
    command += ["-i", "testsrc=size=32x24:rate=8:duration=0.5", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True, timeout=60)
    return path.read_bytes()


def test_an_upload_is_probed_and_its_frames_capped(tmp_path: Path) -> None:
    data = _clip(tmp_path / "in.mp4")
    source = probe_upload(VideoUpload(data, "mp4"), VideoLimits())
    assert (source.frames, round(source.fps), source.width, source.height) == (4, 8, 32, 24)
    assert source.data == data and source.container == "mp4"
    with pytest.raises(InvalidVideo) as caught:
        probe_upload(VideoUpload(data, "mp4"), VideoLimits(max_frames=2))
    assert caught.value.code == "video_too_long"


def test_an_unreadable_upload_is_refused_with_the_probes_code() -> None:
    with pytest.raises(InvalidVideo) as caught:
        probe_upload(VideoUpload(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64, "mp4"), VideoLimits())
    assert caught.value.code.startswith("video_")
