"""Animation jobs in the job system: frames reach disk in order, a SIGKILL resumes at the last
finished frame (not frame 0), animations never join a picture's batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jobtools import BOTH_QUEUES, stored_keys

from artgen.config import Settings
from artgen.jobs.frames import collect_frames
from artgen.jobs.job_files import frame_file_name
from artgen.jobs.queue import Keys, QueuedTask
from artgen.jobs.schemas import JobCreate, JobKind, JobStatus
from artgen.jobs.service import JobService
from artgen.jobs.source_video import VideoUpload
from artgen.jobs.store import JobStore
from artgen.jobs.worker import Worker
from artgen.videos import VideoLimits, probe
from support import image_bytes, wait_for

HERE = Path(__file__).parent
FRAMES = 16


def animation_request(**overrides: object) -> JobCreate:
    """A 32x32 animation on the tiny models."""
    fields = {"kind": "animation", "prompt": "a lighthouse", "width": 32, "height": 32}
    fields.update({"iterations": 2, "iterations_per_frame": 2, "frames": 3, "cutn": 4})
    fields.update(overrides)
    return JobCreate.model_validate(fields)


def test_a_queued_animation_with_frames_canceled_keeps_them_as_a_partial_video(
    service: JobService,
) -> None:
    # Its record can say queued with frames made: requeued after a lost worker, or a worker runs
    # it and the collector took its frames before the progress that marks it running.
    job, _ = service.submit(animation_request(frames=5))
    png = image_bytes(size=(32, 32))
    for index in (0, 1):
        service.queue.put(Keys.frame(job.id, 1, index), {"attempt": 1, "index": index, "png": png})
    collect_frames(service.queue, service.store, service.get(job.id))
    assert service.get(job.id).status == JobStatus.queued and service.get(job.id).frames_done == 2
    canceled = service.cancel(job.id)
    assert canceled.status == JobStatus.canceled and canceled.video_file is not None
    assert probe(service.video_file(job.id), VideoLimits()).frames == 2
    assert service.queue.control(job.id)["cancel"]  # a worker running it stops


def test_the_record_counts_every_frames_iterations(service: JobService) -> None:
    job, _ = service.submit(animation_request(iterations=5, frames=4, iterations_per_frame=3))
    assert job.kind == JobKind.animation and job.frames == 4
    assert job.iterations == 5 + 3 * 3
    assert job.params["kind"] == "animation" and job.params["zoom"] == "0:(1.0)"


@BOTH_QUEUES
def test_frames_are_written_in_order_and_a_gap_waits(service: JobService) -> None:
    job, _ = service.submit(animation_request(frames=5))
    png = image_bytes(size=(32, 32))
    for index in (0, 1, 3):  # frame 2 has not arrived: 3 must wait for it
        service.queue.put(Keys.frame(job.id, 1, index), {"attempt": 1, "index": index, "png": png})
    job = collect_frames(service.queue, service.store, service.get(job.id))
    assert job.frames_done == 2
    assert service.queue.peek(Keys.frame(job.id, 1, 0)) is None  # collected frames leave
    assert service.queue.peek(Keys.frame(job.id, 1, 3)) is not None
    service.queue.put(Keys.frame(job.id, 1, 2), {"attempt": 1, "index": 2, "png": png})
    job = collect_frames(service.queue, service.store, service.get(job.id))
    assert job.frames_done == 4 and job.preview_file is not None
    for index in range(4):
        assert service.store.file_path(job.id, frame_file_name(index)).read_bytes() == png
    frames = [e.data["frame"] for e in service.events(job.id) if e.type == "frame"]
    assert frames == [0, 1, 2, 3]


@BOTH_QUEUES
def test_a_stale_attempts_frames_are_ignored(service: JobService) -> None:
    job, _ = service.submit(animation_request())
    png = image_bytes(size=(32, 32))
    service.queue.put(Keys.frame(job.id, 1, 0), {"attempt": 2, "index": 0, "png": png})
    assert collect_frames(service.queue, service.store, service.get(job.id)).frames_done == 0


def test_sigkill_mid_animation_resumes_at_the_last_finished_frame(
    tmp_path: Path, models_home: Path
) -> None:
    data_dir = tmp_path / "data"
    command = [sys.executable, str(HERE / "serve_animation.py"), str(data_dir), str(models_home)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [*command, "--submit", str(FRAMES)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        job_id = first.stdout.readline().strip()
        store = JobStore(data_dir)
        wait_for(lambda: (store.get(job_id).checkpoint_frame or 0) >= 2, 120)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    killed = store.get(job_id)
    assert killed.status == JobStatus.running and killed.frames_done < FRAMES
    checkpoint_frame = killed.checkpoint_frame
    assert killed.frames_done >= checkpoint_frame >= 2

    second = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]

    resumed = store.get(job_id)
    assert resumed.status == JobStatus.succeeded and resumed.attempt == 2
    # The second attempt started at the checkpoint's frame (or the one after, when a newer
    # checkpoint reached the queue just before the kill), not at frame 0.
    assert resumed.start_frame is not None and resumed.start_frame >= checkpoint_frame
    events = store.events(job_id)
    requeue = [e.id for e in events if e.type == "status" and e.data["status"] == "queued"][1]
    after = [e.data["frame"] for e in events if e.type == "progress" and e.id > requeue]
    assert min(frame for frame in after if frame is not None) >= checkpoint_frame
    assert resumed.frames_done == FRAMES
    info = probe(store.file_path(job_id, resumed.video_file), VideoLimits())
    assert info.frames == FRAMES and round(info.fps) == 8
    assert store.active() == []
    assert store.recover() == []


def test_animations_never_join_a_batch(
    settings: Settings, service: JobService, models_loader: Callable[..., Any]
) -> None:
    worker = Worker(settings.model_copy(update={"batch_jobs": 4}), service.queue, models_loader)
    picture = JobCreate.model_validate({"prompt": "x", "width": 32, "height": 32})
    animated = animation_request()

    def running(request: JobCreate) -> SimpleNamespace:
        models = models_loader("tiny", ["tiny"], worker.device)
        generation = SimpleNamespace(models=models, width=32, height=32)
        return SimpleNamespace(
            job_id="r", request=request, generation=generation, pixels=32 * 32,
            size=(32, 32), vqgan_factor=models.vqgan.factor,
        )  # fmt: skip

    def task(request: JobCreate) -> QueuedTask:
        return QueuedTask("t", "j", 1, {"params": request.stored_params()})

    assert worker.batching.fits(task(picture), [running(picture)])  # same size pictures do batch
    assert not worker.batching.fits(task(animated), [running(picture)])
    assert not worker.batching.fits(task(picture), [running(animated)])


@BOTH_QUEUES
def test_a_checkpoint_waits_for_the_frames_it_counts(settings: Settings) -> None:
    service = JobService.from_settings(settings)  # its collector driven by hand
    try:
        job, _ = service.submit(animation_request(frames=5))
        png = image_bytes(size=(32, 32))
        checkpoint = {"attempt": 1, "iteration": 4, "frame": 2, "state": b"state"}
        service.queue.put(Keys.checkpoint(job.id, 1), checkpoint)
        service.collector.poll()
        assert service.get(job.id).checkpoint_file is None  # frames 0 and 1 never arrived
        for index in (0, 1):
            frame = {"attempt": 1, "index": index, "png": png}
            service.queue.put(Keys.frame(job.id, 1, index), frame)
        service.queue.put(Keys.checkpoint(job.id, 1), checkpoint)
        service.collector.poll()
        job = service.get(job.id)
        assert job.frames_done == 2 and job.checkpoint_frame == 2 and job.checkpoint_file
    finally:
        service.close()


@BOTH_QUEUES
def test_a_restyle_handed_back_resumes_at_its_frame_and_ends_the_same(
    tmp_path: Path, service: JobService, start_worker: Callable[[], Any]
) -> None:
    import imageio_ffmpeg

    source = tmp_path / "in.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi"]
    command += ["-i", "testsrc=size=32x32:rate=8:duration=1.5", "-pix_fmt", "yuv420p", str(source)]
    subprocess.run(command, check=True, timeout=60)
    info = probe(source, VideoLimits())
    video = VideoUpload(data=source.read_bytes(), container="mp4")
    request = JobCreate.model_validate(
        {"kind": "restyle", "prompt": "an oil painting", "width": 32, "height": 32, "cutn": 4}
        | {"iterations": 2, "iterations_per_frame": 2, "coherence": 0.3, "seed": 5}
    )

    first = start_worker()
    job, _ = service.submit(request, source_video=video)
    wait_for(lambda: service.get(job.id).frames_done >= 3, 120)
    first.stop()  # like SIGTERM: checkpoint, hand the job back
    requeued = wait_for(lambda: (j := service.get(job.id)).attempt == 2 and j, 60)
    resumed_at = requeued.checkpoint_frame
    assert resumed_at is not None and resumed_at >= 3 and requeued.frames_done == resumed_at

    start_worker()
    done = wait_for(lambda: (j := service.get(job.id)).status.terminal and j, 120)
    assert done.status == JobStatus.succeeded, done.error
    assert done.start_frame == resumed_at and done.frames_done == info.frames == 12
    output = probe(service.video_file(job.id), VideoLimits())
    assert output.frames == 12 and round(output.fps) == 8
    assert [key for key in stored_keys(service.queue, job.id) if ":frame:" in key] == []

    # The same restyle, never interrupted, makes the same last frame.
    reference, _ = service.submit(request, source_video=video)
    wait_for(lambda: service.get(reference.id).status.terminal, 120)
    assert service.image_file(job.id).read_bytes() == service.image_file(reference.id).read_bytes()
