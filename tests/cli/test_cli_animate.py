"""`artgen animate` and `artgen restyle` end to end on CPU with the tiny models (32x32, cutn 4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from artgen.cli import app
from artgen.engine.animation import Animation
from artgen.engine.generate import StepResult
from artgen.videos import VideoLimits, probe

# 32x32, 2 iterations of frame 0 and of every later frame: a few seconds per command.
TINY = ["--model", "tiny", "--size", "32", "32", "--cutn", "4", "--device", "cpu"]
QUICK = [*TINY, "--iterations", "2", "--iterations-per-frame", "2", "--seed", "3"]


def test_animate_writes_an_mp4_with_the_frames_and_fps(runner: CliRunner, tmp_path: Path) -> None:
    output = tmp_path / "out" / "city.mp4"
    frames_dir = tmp_path / "frames"
    args = ["animate", "a city at night", "-o", str(output), *QUICK, "--frames", "3"]
    args += ["--fps", "5", "--zoom", "0:(1.05), 2:(1.0)", "--angle", "0:(2)"]
    args += ["--translation-x", "0:(1)", "--prompt-at", "2:a stormy sea"]
    args += ["--frames-dir", str(frames_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {output} (3 frames at 5 fps, seed 3)" in result.output

    info = probe(output, VideoLimits())
    assert (info.frames, info.fps, info.width, info.height) == (3, 5.0, 32, 32)
    written = sorted(path.name for path in frames_dir.iterdir())
    assert written == ["frame-00000.png", "frame-00001.png", "frame-00002.png"]
    with Image.open(frames_dir / "frame-00002.png") as frame:
        assert frame.size == (32, 32)


def test_a_bad_schedule_names_the_option_and_the_position(
    runner: CliRunner, tmp_path: Path
) -> None:
    output = tmp_path / "city.mp4"
    result = runner.invoke(
        app, ["animate", "a city", "-o", str(output), *QUICK, "--zoom", "0:(1.0), 5:1.2"]
    )
    assert result.exit_code == 2
    assert "error: --zoom: position 11: expected '(' after ':'" in result.output
    assert "Traceback" not in result.output and not output.exists()

    bad_entry = runner.invoke(app, ["animate", "a city", "-o", str(output), "--prompt-at", "x"])
    assert bad_entry.exit_code == 2
    assert "--prompt-at 'x' must look like \"40:a stormy sea\"" in bad_entry.output

    not_mp4 = runner.invoke(app, ["animate", "a city", "-o", str(tmp_path / "city.gif")])
    assert not_mp4.exit_code == 2 and "must end in .mp4" in not_mp4.output


def source_video(path: Path, frames: int, fps: int) -> Path:
    """A small test-pattern MP4 with a sine-wave audio track, made with imageio-ffmpeg's ffmpeg."""
    seconds = frames / fps
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
         f"testsrc=size=32x32:rate={fps}", "-f", "lavfi", "-i", f"sine=duration={seconds}",
         "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
         str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_restyle_keeps_the_frame_count_fps_and_audio(runner: CliRunner, tmp_path: Path) -> None:
    source = source_video(tmp_path / "in.mp4", frames=3, fps=6)
    assert probe(source, VideoLimits()).has_audio
    output = tmp_path / "out.mp4"
    args = ["restyle", str(source), "an oil painting", "-o", str(output), *QUICK]
    result = runner.invoke(app, [*args, "--coherence", "0.4"])
    assert result.exit_code == 0, result.output

    info = probe(output, VideoLimits())
    assert (info.frames, info.fps, info.width, info.height) == (3, 6.0, 32, 32)
    assert info.has_audio


def test_restyle_refuses_a_file_that_is_not_a_video(runner: CliRunner, tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(np.random.default_rng(0).bytes(4096))
    output = tmp_path / "out.mp4"
    result = runner.invoke(app, ["restyle", str(fake), "an oil painting", "-o", str(output)])
    assert result.exit_code == 2
    assert f"error: VIDEO {str(fake)!r}: " in result.output
    assert "Traceback" not in result.output and not output.exists()

    missing = runner.invoke(app, ["restyle", str(tmp_path / "nope.mp4"), "x", "-o", str(output)])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_ctrl_c_keeps_the_frames_made_so_far(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = Animation.step
    steps = {"count": 0}

    def step_then_interrupt(self: Animation) -> StepResult:
        # Frame 0 and frame 1 take 2 steps each: Ctrl-C arrives during frame 2.
        steps["count"] += 1
        if steps["count"] == 5:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Animation, "step", step_then_interrupt)
    output = tmp_path / "city.mp4"
    result = runner.invoke(app, ["animate", "a city", "-o", str(output), *QUICK, "--frames", "4"])
    assert result.exit_code == 130, result.output
    assert "interrupted: wrote" in result.output and "(2 frames" in result.output
    assert probe(output, VideoLimits()).frames == 2
