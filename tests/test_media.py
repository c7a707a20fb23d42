"""media: one PNG metadata schema, JPEG conversion, the MP4 writer and the service's recording."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artgen import __version__
from artgen.media import (
    Mp4Recording,
    Mp4Writer,
    NoParameters,
    encode_png,
    png_text,
    png_to_jpeg,
    read_parameters,
    write_png,
)
from artgen.videos import VideoLimits, probe

LIMITS = VideoLimits()


def gradient(width: int = 32, height: int = 24) -> Image.Image:
    row = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.stack([np.tile(row, (height, 1))] * 3, axis=-1)
    return Image.fromarray(pixels, mode="RGB")


def test_png_text_then_read_parameters_round_trips_the_schema(tmp_path: Path) -> None:
    text = png_text({"prompts": ["a castle", "fog:-0.5"], "iterations": 3}, seed=0)
    assert text["prompt"] == "a castle | fog:-0.5" and text["seed"] == "0"
    assert text["Software"] == f"artgen {__version__}"
    path = tmp_path / "out.png"
    write_png(gradient(), path, text)
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed
    with Image.open(path) as image:
        assert read_parameters(image) == {"prompts": ["a castle", "fog:-0.5"], "iterations": 3,
                                          "seed": 0}  # fmt: skip


def test_read_parameters_takes_the_old_key_and_refuses_what_is_not_ours() -> None:
    old_json = json.dumps({"seed": 4, "prompt": ["a castle", "fog:-0.5"]})
    old = Image.open(io.BytesIO(encode_png(gradient(), {"params": old_json})))
    assert read_parameters(old) == {"seed": 4, "prompts": "a castle | fog:-0.5"}
    for text, message in (
        (None, "carries no artgen parameters"),
        ({"parameters": "{not json"}, "not valid JSON"),
        ({"parameters": "[1, 2]"}, "not a JSON object"),
    ):
        image = Image.open(io.BytesIO(encode_png(gradient(), text)))
        with pytest.raises(NoParameters, match=message):
            read_parameters(image)


def test_png_to_jpeg_from_bytes_a_path_and_an_open_file(tmp_path: Path) -> None:
    png = encode_png(gradient(40, 30))
    path = tmp_path / "image.png"
    path.write_bytes(png)
    with path.open("rb") as handle:
        sources: list[bytes | Path | io.BufferedReader] = [png, path, handle]
        for source in sources:
            jpeg = Image.open(io.BytesIO(png_to_jpeg(source)))
            assert (jpeg.format, jpeg.mode, jpeg.size) == ("JPEG", "RGB", (40, 30))
            # Quality 90: the gradient comes back close to what went in.
            difference = np.abs(np.asarray(jpeg, np.int16) - np.asarray(gradient(40, 30)))
            assert difference.mean() < 3


def test_mp4_writer_takes_pil_images_and_arrays_and_renames_on_close(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with Mp4Writer(path, fps=5) as writer:
        writer.append(gradient())
        writer.append(np.asarray(gradient()))
        assert not path.exists()  # only the partial file while frames come
    assert writer.frames == 2 and list(tmp_path.iterdir()) == [path]
    info = probe(path, LIMITS)
    assert (info.width, info.height, info.frames, info.fps) == (32, 24, 2, 5.0)


def test_mp4_writer_discards_its_partial_file_on_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="stop"), Mp4Writer(path, fps=5) as writer:
        writer.append(gradient())
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_mp4_writer_refuses_frames_that_are_not_rgb_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RGB uint8"), Mp4Writer(tmp_path / "a.mp4", 5) as writer:
        writer.append(np.zeros((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_mp4_writer_writes_the_container_of_its_suffix(tmp_path: Path) -> None:
    path = tmp_path / "out.mkv"
    with Mp4Writer(path, fps=4) as writer:
        writer.append(gradient())
    assert path.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # Matroska's EBML magic, not MP4's ftyp
    assert probe(path, LIMITS).frames == 1


def test_mp4_recording_hands_back_bytes_and_leaves_no_file() -> None:
    recording = Mp4Recording(fps=10)
    assert recording.finish() is None  # no frames, no video
    recording = Mp4Recording(fps=10)
    for _ in range(3):
        recording.append(gradient())
    assert recording._directory is not None
    directory = Path(recording._directory.name)
    mp4 = recording.finish()
    assert mp4 is not None and mp4[4:8] == b"ftyp" and recording.frames == 3
    assert not directory.exists()


def test_a_discarded_recording_removes_its_directory() -> None:
    recording = Mp4Recording(fps=10)
    recording.append(gradient())
    assert recording._directory is not None
    directory = Path(recording._directory.name)
    recording.discard()
    assert not directory.exists() and recording.finish() is None
