"""videos: write_mp4 then probe, GIF and WebM input, audio kept, hostile files refused."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artgen.media import write_mp4
from artgen.videos import SequentialFrames, VideoError, VideoLimits, ffmpeg_exe, probe

LIMITS = VideoLimits()


def ffmpeg(*arguments: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", *arguments], check=True)


def grey_frames(count: int, size: tuple[int, int] = (32, 32)) -> list[np.ndarray]:
    """`count` flat frames (H, W, 3), each a different grey."""
    return [
        np.full((size[1], size[0], 3), (20 + 40 * index) % 256, np.uint8) for index in range(count)
    ]


@pytest.fixture
def clip_with_audio(tmp_path: Path) -> Path:
    """A 2 s, 12 fps, 64x48 MP4 with a sine audio track."""
    path = tmp_path / "with_audio.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=2", "-f", "lavfi",
        "-i", "sine=duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", str(path),
    )  # fmt: skip
    return path


def child_processes() -> list[int]:
    """Ids of this process's live children (zombies too), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == os.getpid():
                children.append(int(entry.name))
    return children


def refused(path: Path, limits: VideoLimits = LIMITS) -> VideoError:
    with pytest.raises(VideoError) as caught:
        probe(path, limits)
    return caught.value


def test_write_mp4_then_probe_gives_the_frame_count_and_fps(tmp_path):
    path = tmp_path / "out.mp4"
    assert write_mp4(iter(grey_frames(5)), path, fps=8) == 5
    info = probe(path, LIMITS)
    assert (info.width, info.height, info.fps, info.frames) == (32, 32, 8.0, 5)
    assert info.seconds == pytest.approx(5 / 8, abs=0.02)
    assert not info.has_audio
    assert list(tmp_path.iterdir()) == [path]  # no temp file left


def test_write_mp4_pads_odd_sizes_and_refuses_mixed_sizes(tmp_path):
    path = tmp_path / "odd.mp4"
    assert write_mp4(grey_frames(2, (33, 47)), path, fps=4) == 2
    assert (probe(path, LIMITS).width, probe(path, LIMITS).height) == (34, 48)
    with pytest.raises(ValueError, match="first frame's size"):
        write_mp4([*grey_frames(1), *grey_frames(1, (16, 16))], tmp_path / "mixed.mp4", fps=4)
    assert not (tmp_path / "mixed.mp4").exists()
    assert write_mp4([], tmp_path / "none.mp4", fps=4) == 0
    assert not (tmp_path / "none.mp4").exists()


def test_audio_from_a_source_is_kept(tmp_path, clip_with_audio):
    assert probe(clip_with_audio, LIMITS).has_audio
    path = tmp_path / "restyled.mp4"
    write_mp4(grey_frames(24), path, fps=12, audio_from=clip_with_audio)
    info = probe(path, LIMITS)
    assert info.has_audio and info.frames == 24
    silent = tmp_path / "silent.mp4"
    write_mp4(grey_frames(2), silent, fps=12, audio_from=path.with_name("missing-audio.mp4"))
    assert not probe(silent, LIMITS).has_audio


@pytest.mark.parametrize("frames", [3, 5, 12])
def test_audio_as_long_as_the_video_keeps_every_frame(tmp_path, frames):
    """An AAC track ends a little early; the last frame used to be cut with it (-shortest)."""
    source = tmp_path / "source.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size=32x32:rate=8:duration={frames / 8}", "-f", "lavfi",
        "-i", f"sine=duration={frames / 8}", "-frames:v", str(frames), "-pix_fmt", "yuv420p",
        str(source),
    )  # fmt: skip
    path = tmp_path / "restyled.mp4"
    write_mp4(grey_frames(frames), path, fps=8, audio_from=source)
    info = probe(path, LIMITS)
    assert info.has_audio and info.frames == frames


def test_sequential_frames_decode_in_order_and_resize(clip_with_audio):
    with SequentialFrames(clip_with_audio, LIMITS, size=(32, 32)) as frames:
        first = frames.frame(0)
        assert first.size == (32, 32)
        assert frames.frame(0).tobytes() == first.tobytes()
        assert frames.frame(23).size == (32, 32)  # skips forward
        with pytest.raises(ValueError, match="in order"):
            frames.frame(5)
        with pytest.raises(VideoError, match="ended before frame 24"):
            frames.frame(24)


def test_animated_gif_input(tmp_path):
    path = tmp_path / "in.gif"
    images = [Image.new("RGB", (40, 30), (60 * index, 0, 0)) for index in range(4)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    info = probe(path, LIMITS)
    assert (info.width, info.height, info.frames, info.fps) == (40, 30, 4, 10.0)
    with SequentialFrames(path, LIMITS) as frames:
        reds = [frames.frame(index).getpixel((5, 5))[0] for index in range(4)]
    assert reds == [0, 60, 120, 180]


def test_webm_input(tmp_path):
    path = tmp_path / "in.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=1", "-c:v", "libvpx-vp9",
           str(path))  # fmt: skip
    info = probe(path, LIMITS)
    assert (info.width, info.height, info.frames) == (64, 48, 12)


def test_truncated_mp4_is_refused(tmp_path):
    source = tmp_path / "whole.mp4"
    write_mp4(grey_frames(12), source, fps=12)  # faststart: the index is at the front
    data = source.read_bytes()
    for cut in (len(data) // 2, len(data) - 40):
        truncated = tmp_path / f"cut{cut}.mp4"
        truncated.write_bytes(data[:cut])
        assert refused(truncated).code == "video_invalid"
    at_end = tmp_path / "index_at_end.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(at_end))  # fmt: skip
    at_end.write_bytes(at_end.read_bytes()[: at_end.stat().st_size * 2 // 3])
    assert refused(at_end).code == "video_invalid"


def test_non_video_bytes_and_empty_files_are_refused(tmp_path):
    random_bytes = tmp_path / "random.mp4"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(5000))
    error = refused(random_bytes)
    assert error.code == "video_invalid" and "MP4, WebM or animated GIF" in str(error)
    picture = tmp_path / "picture.mp4"
    Image.new("RGB", (8, 8)).save(picture, format="PNG")
    assert refused(picture).code == "video_invalid"  # ffmpeg reads it; it is not a video file
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert refused(empty).code == "video_empty"


def test_zero_frame_video_is_refused(tmp_path):
    screen_only = tmp_path / "zero.gif"  # a GIF header and trailer, no image
    screen_only.write_bytes(b"GIF89a" + struct.pack("<HH", 40, 30) + bytes([0, 0, 0]) + b";")
    error = refused(screen_only)
    assert error.code == "video_empty" and "no frames" in str(error)


def test_claimed_huge_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.gif"
    images = [Image.new("RGB", (40, 30), (60 * index, 0, 0)) for index in range(2)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", 4000, 3000)  # the GIF's logical screen size
    path.write_bytes(bytes(data))
    error = refused(path)
    assert error.code == "video_too_large"
    assert str(error) == "the video is 4000x3000; at most 1024x1024"


def test_limits_on_bytes_duration_and_frames(tmp_path, clip_with_audio):
    assert refused(clip_with_audio, VideoLimits(max_bytes=100)).code == "video_too_large"
    assert refused(clip_with_audio, VideoLimits(max_width=32)).code == "video_too_large"
    long_claim = tmp_path / "slow.mp4"
    write_mp4(grey_frames(2, (16, 16)), long_claim, fps=0.02)  # two frames, 100 s
    error = refused(long_claim)
    assert error.code == "video_too_long" and "100.0 s; at most 60 s" in str(error)
    error = refused(clip_with_audio, VideoLimits(max_frames=10))
    assert error.code == "video_too_long" and "more than 10 frames" in str(error)
    frames = SequentialFrames(clip_with_audio, VideoLimits(max_frames=10))
    with frames, pytest.raises(VideoError, match="more than 10 frames"):
        frames.frame(10)


def test_decode_timeout_kills_the_decoder(clip_with_audio):
    before = child_processes()
    error = refused(clip_with_audio, VideoLimits(decode_timeout_s=0.001))
    assert error.code == "video_timeout" and "longer than" in str(error)
    assert child_processes() == before  # the ffmpeg child was killed and reaped


def test_closing_sequential_frames_leaves_no_decoder(clip_with_audio):
    before = child_processes()
    frames = SequentialFrames(clip_with_audio, LIMITS)
    frames.frame(2)
    assert len(child_processes()) == len(before) + 1
    frames.close()
    frames.close()
    assert child_processes() == before
