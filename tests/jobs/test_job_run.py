"""JobRun: previews leave the generation loop; a busy encoder skips all but the last preview."""

from __future__ import annotations

import gc
import io
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from jobtools import tiny_request
from PIL import Image

from artgen.engine.images import to_pil
from artgen.jobs import job_run
from artgen.jobs.job_run import JobRun, host_image, pil_image
from artgen.jobs.queue import Keys
from artgen.jobs.reports import Sign

CPU = torch.device("cpu")


def start(models: Any, put: Any, encoder: Any = None, **fields: Any) -> JobRun:
    payload = {"params": tiny_request(**fields).model_dump()}
    return JobRun.start(
        "job", 1, payload, models, device=CPU, put=put, sign=lambda: Sign("w", 0.0),
        timeout_seconds=60, checkpoint_every=1000, encoder=encoder,
    )  # fmt: skip


def test_host_image_matches_to_pil() -> None:
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    copied = np.asarray(pil_image(host_image(image)))
    assert copied.shape == (24, 40, 3)
    assert np.array_equal(copied, np.asarray(to_pil(image)))


def test_a_busy_encoder_skips_previews_but_not_the_last_nor_video_frames(tiny_models: Any) -> None:
    published: dict[int, bytes] = {}

    def put(key: str, value: Any) -> bool:
        if key == Keys.preview("job", 1):
            published[value.iteration] = value.png
        return True

    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as encoder:
        run = start(tiny_models, put, encoder, iterations=4, preview_every=1, video=True)
        frames: list[Any] = []
        assert run.video is not None
        real_append = run.video.append
        run.video.append = lambda frame: (frames.append(frame), real_append(frame))[-1]
        encoder.submit(release.wait)  # the encoder is busy until released
        images = {}
        for _ in range(4):
            run.after_step(run.generation.step())
            images[run.generation.iteration] = np.asarray(run.generation.image())
        release.set()
        run.drain()
    # 1 was queued behind the busy encoder, 2 and 3 came while 1 was pending, 4 is the last.
    assert sorted(published) == [1, 4]
    for iteration, png in published.items():
        decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert np.array_equal(decoded, images[iteration])
    assert len(frames) == 4
    assert np.array_equal(frames[1], images[2])
    run.close()


def test_timelapse_frames_stream_to_the_encoder_and_memory_stays_flat(
    tiny_models: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each frame goes to ffmpeg as it comes: none is kept, and the MP4 has every frame."""
    alive: list[weakref.ref[Any]] = []
    real_frame = job_run._frame

    def tracked_frame(image: Any) -> Any:
        frame = real_frame(image)
        alive.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(job_run, "_frame", tracked_frame)
    run = start(tiny_models, lambda key, value: True, iterations=8, preview_every=1, video=True)
    held = []
    for _ in range(8):
        run.after_step(run.generation.step())
        gc.collect()
        held.append(sum(ref() is not None for ref in alive))
    assert len(alive) == 8 and max(held) <= 1, held  # the writer may hold the latest
    result = run.result()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "video.mp4"
        path.write_bytes(result.mp4)
        reader = imageio.get_reader(path, format="FFMPEG")
        try:
            assert reader.count_frames() == 8
        finally:
            reader.close()
    assert run.video is not None and run.video.frames == 8
    run.close()


def test_an_attempt_that_does_not_succeed_leaves_no_timelapse_file(tiny_models: Any) -> None:
    run = start(tiny_models, lambda key, value: True, iterations=6, preview_every=1, video=True)
    for _ in range(3):
        run.after_step(run.generation.step())
    assert run.video is not None and run.video._directory is not None
    directory = Path(run.video._directory.name)
    assert directory.is_dir()
    run.close()  # canceled, failed or handed back: the partial file goes
    assert not directory.exists()


def test_without_an_encoder_every_preview_is_published_in_place(tiny_models: Any) -> None:
    published = []
    run = start(tiny_models, lambda key, value: published.append(key) or True, preview_every=2)
    for _ in range(6):
        run.after_step(run.generation.step())
    assert published.count(Keys.preview("job", 1)) == 3


def test_checkpoints_are_snapshots_written_off_the_loop(tiny_models: Any) -> None:
    written: dict[int, bytes] = {}

    def put(key: str, value: Any) -> bool:
        if key == Keys.checkpoint("job", 1):
            written[value.iteration] = value.state
        return True

    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as encoder:
        run = start(tiny_models, put, encoder, iterations=8, preview_every=100)
        run.checkpoint_every = 2
        encoder.submit(release.wait)
        z_at: dict[int, torch.Tensor] = {}
        for _ in range(5):
            run.after_step(run.generation.step())
            z_at[run.generation.iteration] = run.generation.z.detach().clone()
        run.checkpoint()  # forced, as when the worker shuts down
        release.set()
        run.drain()
    # 2 waited behind the busy encoder, 4 was skipped meanwhile, the forced one at 5 was not.
    assert sorted(written) == [2, 5]
    for iteration, data in written.items():
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        assert state["iteration"] == iteration
        assert torch.equal(state["z"], z_at[iteration])  # the state then, not when written
