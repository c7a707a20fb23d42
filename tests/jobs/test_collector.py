"""ReportCollector: typed reports applied by type, and an animation's MP4 off the poll thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from jobtools import tiny_request

import artgen.jobs.transitions as transitions_module
from artgen.config import Settings
from artgen.jobs.queue import Keys
from artgen.jobs.reports import Outcome, Preview, Progress, Result, encode
from artgen.jobs.schemas import JobCreate, JobStatus
from artgen.jobs.service import JobService
from support import image_bytes, wait_for


def animation_request() -> JobCreate:
    fields = {"kind": "animation", "prompt": "a lighthouse", "width": 32, "height": 32}
    fields.update({"iterations": 2, "iterations_per_frame": 2, "frames": 2, "cutn": 4})
    return JobCreate.model_validate(fields)


@pytest.fixture
def idle_service(settings: Settings) -> Any:
    """A service whose collector is not started (driven by hand, or started by the test)."""
    service = JobService.from_settings(settings)
    yield service
    service.close()


def test_reports_are_applied_by_type(idle_service: JobService) -> None:
    service = idle_service
    job, _ = service.submit(tiny_request(iterations=10))
    progress = Progress(1, 4, "w", time.time(), iterations=10, loss=0.5, seed=9)
    service.queue.put(Keys.progress(job.id, 1), encode(progress))
    service.collector.poll()
    running = service.get(job.id)
    assert running.status == JobStatus.running and running.iteration == 4
    assert running.loss == 0.5 and running.seed == 9 and running.worker_id == "w"
    png = image_bytes(size=(32, 32))
    service.queue.put(Keys.preview(job.id, 1), encode(Preview(1, 4, png)))
    service.collector.poll()
    assert service.get(job.id).preview_iteration == 4
    [preview] = [event for event in service.events(job.id) if event.type == "preview"]
    assert preview.data == {"iteration": 4}  # the jobs layer builds no URL: the API adds it
    result = Result(1, Outcome.succeeded, iteration=10, seed=9, png=png)
    service.queue.put(Keys.result(job.id, 1), encode(result))
    service.collector.poll()
    done = service.get(job.id)
    assert done.status == JobStatus.succeeded and done.image_file is not None
    assert service.store.read_file(job.id, done.image_file) == png


def test_a_result_that_does_not_parse_ends_the_job_as_failed(idle_service: JobService) -> None:
    service = idle_service
    job, _ = service.submit(tiny_request(iterations=10))
    service.queue.put(Keys.result(job.id, 1), {"attempt": 1, "status": "exploded"})
    service.collector.poll()
    failed = service.get(job.id)
    assert failed.status == JobStatus.failed and failed.error is not None
    assert failed.error.code == "internal_error" and "exploded" in failed.error.message


def test_an_interrupted_result_requeues_the_job(idle_service: JobService) -> None:
    service = idle_service
    job, _ = service.submit(tiny_request(iterations=10))
    service.queue.put(Keys.result(job.id, 1), encode(Result(1, Outcome.interrupted, iteration=3)))
    service.collector.poll()
    requeued = service.get(job.id)
    assert requeued.status == JobStatus.queued and requeued.attempt == 2


def test_polling_goes_on_while_an_animations_mp4_is_encoded(
    idle_service: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = idle_service
    entered, release = threading.Event(), threading.Event()
    real_video_files = transitions_module.video_files
    encoder_threads: list[str] = []

    def slow_video_files(*args: Any) -> dict[str, str]:
        encoder_threads.append(threading.current_thread().name)
        entered.set()
        assert release.wait(60)
        return real_video_files(*args)

    monkeypatch.setattr(transitions_module, "video_files", slow_video_files)
    animation, _ = service.submit(animation_request())
    picture, _ = service.submit(tiny_request(iterations=10))
    png = image_bytes(size=(32, 32))
    for index in range(2):
        frame = {"attempt": 1, "index": index, "png": png}
        service.queue.put(Keys.frame(animation.id, 1, index), frame)
    result = Result(1, Outcome.succeeded, iteration=animation.iterations, png=png)
    service.queue.put(Keys.result(animation.id, 1), encode(result))
    service.collector.start()
    try:
        assert entered.wait(60)  # the MP4 is being encoded (and stays so until released)
        progress = Progress(1, 3, "w", time.time(), iterations=10)
        service.queue.put(Keys.progress(picture.id, 1), encode(progress))
        # The other job's progress is applied meanwhile: polling does not wait for the MP4.
        wait_for(lambda: service.get(picture.id).iteration == 3, 60)
        assert not service.get(animation.id).status.terminal  # it ends once its video is in
        release.set()
        done = wait_for(lambda: (j := service.get(animation.id)).status.terminal and j, 60)
        assert done.status == JobStatus.succeeded and done.video_file is not None
        assert encoder_threads and encoder_threads[0].startswith("artgen-video")
    finally:
        release.set()
        service.collector.stop()
