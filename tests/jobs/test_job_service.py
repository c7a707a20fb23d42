"""JobService, embedded worker and tiny models: lifecycle, cancel, idempotency, limits."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from jobtools import BOTH_QUEUES, tiny_request
from PIL import Image

from artgen.api.schemas import JobPublic
from artgen.config import Settings
from artgen.jobs.queue import Keys
from artgen.jobs.schemas import JobStatus
from artgen.jobs.service import JobService, ShuttingDown
from artgen.jobs.submission import ActiveLimit, IdempotencyConflict, QueueFull
from artgen.jobs.validation import InvalidJob
from support import wait_for


def finished(service: JobService, job_id: str) -> Any:
    job = service.get(job_id)
    return job if job is not None and job.status.terminal else None


@BOTH_QUEUES
def test_job_runs_end_to_end(service: JobService, start_worker: Callable[[], Any]) -> None:
    job, created = service.submit(tiny_request(iterations=12, video=True))
    assert created and job.status == JobStatus.queued and job.attempt == 1
    assert service.queue_position(job) == 0
    public = JobPublic.from_job(job, 0).model_dump(mode="json")
    assert public["urls"]["image"] is None and public["queue_position"] == 0
    assert public["params"]["model"] == "tiny" and public["params"]["seed"] == 3

    start_worker()
    done = wait_for(lambda: finished(service, job.id), 60)

    assert done.status == JobStatus.succeeded, done.error
    assert done.iteration == 12 and done.progress == 1.0 and done.seed == 3
    assert done.started_at is not None and done.finished_at is not None
    assert done.checkpoint_file is None  # dropped once the job succeeded
    image_path = service.image_file(job.id)
    with Image.open(image_path) as image:
        assert image.size == (32, 32)
        assert image.text["prompt"] == "a red square"
        assert image.text["seed"] == "3"
        assert json.loads(image.text["parameters"])["iterations"] == 12
    preview = service.preview_file(job.id)
    assert preview is not None and preview[1] == 12 and preview[0].is_file()
    video = service.video_file(job.id)
    assert video is not None and video.read_bytes()[4:8] == b"ftyp"

    events = service.events(job.id)
    types = [event.type for event in events]
    assert types[0] == "status" and events[0].data == {"status": "queued"}
    assert {"status": "running"} in [event.data for event in events if event.type == "status"]
    assert types[-2:] == ["status", "done"]
    assert events[-1].data["status"] == "succeeded"
    assert events[-1].data["image"] is True and events[-1].data["video"] is True  # the API: URLs
    assert "preview" in types and "progress" in types
    assert [event.id for event in events] == sorted(event.id for event in events)
    iterations = [event.data["iteration"] for event in events if event.type == "progress"]
    assert iterations == sorted(iterations) and iterations[-1] == 12
    assert service.events(job.id, after=events[-2].id) == events[-1:]

    public = JobPublic.from_job(done).model_dump(mode="json")
    assert public["urls"]["image"] == f"/v1/jobs/{job.id}/image"
    assert public["created_at"].endswith("Z")
    # The queue keeps nothing of a finished job (cleared right after the record is final).
    reports = [Keys.attempt_key(kind, job.id, 1) for kind in Keys.ATTEMPT_KINDS]
    wait_for(lambda: service.queue.peek_many([*reports, Keys.control(job.id)]) == {}, 5)

    health = service.health()
    assert health.queue_ok and health.ready and health.workers_alive == 1
    assert service.latest_job_id() == job.id


@BOTH_QUEUES
def test_init_image_and_random_seed(service: JobService, start_worker: Callable[[], Any]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buffer, format="PNG")
    job, _ = service.submit(
        tiny_request(iterations=3, seed=None, init_weight=0.5), init_image=buffer.getvalue()
    )
    assert job.seed is not None and job.params["seed"] == job.seed
    assert service.store.read_file(job.id, job.init_image_file) == buffer.getvalue()
    start_worker()
    done = wait_for(lambda: finished(service, job.id), 60)
    assert done.status == JobStatus.succeeded, done.error
    assert done.seed == job.seed


@BOTH_QUEUES
def test_cancel_queued_job_never_starts(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    job, _ = service.submit(tiny_request())
    canceled = service.cancel(job.id)
    assert canceled.status == JobStatus.canceled
    assert service.cancel(job.id).status == JobStatus.canceled  # idempotent
    other, _ = service.submit(tiny_request(iterations=2))
    start_worker()
    wait_for(lambda: finished(service, other.id), 60)
    job = service.get(job.id)
    assert job.status == JobStatus.canceled and job.started_at is None and job.iteration == 0
    assert service.queue.peek(Keys.claim(job.id, 1)) is None
    assert [event.type for event in service.events(job.id)][-1] == "done"


@BOTH_QUEUES
def test_cancel_running_job_stops_it(service: JobService, start_worker: Callable[[], Any]) -> None:
    start_worker()
    job, _ = service.submit(tiny_request(iterations=2000))
    wait_for(lambda: service.get(job.id).iteration >= 2, 60)
    service.cancel(job.id)
    done = wait_for(lambda: finished(service, job.id), 30)
    assert done.status == JobStatus.canceled
    assert 2 <= done.iteration < 2000
    assert service.events(job.id)[-1].data == {"status": "canceled"}


def test_idempotency_and_owners(service: JobService) -> None:
    first, created = service.submit(tiny_request(), owner="alice", idempotency_key="k1")
    again, created_again = service.submit(tiny_request(), owner="alice", idempotency_key="k1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        service.submit(tiny_request(iterations=5), owner="alice", idempotency_key="k1")
    bob, created = service.submit(tiny_request(), owner="bob", idempotency_key="k1")
    assert created and bob.id != first.id

    assert service.get(first.id, owner="bob") is None
    assert service.get(first.id, owner="alice").id == first.id
    assert service.cancel(first.id, owner="bob") is None
    assert not service.delete(first.id, owner="bob")
    jobs, total = service.list(owner="alice")
    assert total == 1 and jobs[0].id == first.id
    jobs, total = service.list(status=JobStatus.queued)
    assert total == 2
    assert service.get("not-a-uuid") is None and service.events("../x") == []


def test_queue_full_and_draining(settings: Settings) -> None:
    settings.queue_limit = 2
    service = JobService.from_settings(settings)
    try:
        service.submit(tiny_request())
        service.submit(tiny_request())
        with pytest.raises(QueueFull):
            service.submit(tiny_request())
        service.draining = True
        with pytest.raises(ShuttingDown):
            service.submit(tiny_request())
        assert not service.health().ready
    finally:
        service.close()


def test_invalid_jobs(service: JobService) -> None:
    with pytest.raises(InvalidJob) as error:
        service.submit(tiny_request(model="no_such_model"))
    assert error.value.field == "model"
    with pytest.raises(InvalidJob) as error:
        service.submit(tiny_request(clip_models=["nonsense"]))
    assert error.value.field == "clip_models"
    with pytest.raises(InvalidJob, match="prompts"):
        service.submit(tiny_request(prompts="x" * 5000))
    with pytest.raises(InvalidJob, match="image_prompt_weights"):
        service.submit(tiny_request(image_prompt_weights=[1.0]))
    with pytest.raises(InvalidJob, match="prompts"):
        service.submit(tiny_request(prompts="a\x00b"))
    with pytest.raises(InvalidJob, match="schedule.0.prompts"):
        service.submit(tiny_request(schedule=[{"at": 2, "prompts": "x" * 5000}]))
    with pytest.raises(InvalidJob, match="prompts"):
        service.submit(tiny_request(prompts=" "))
    assert service.list()[1] == 0


def test_a_noise_only_job_is_accepted_like_the_route_accepts_it(service: JobService) -> None:
    job, created = service.submit(tiny_request(prompts="", noise_prompts="1:1"))
    assert created and job.params["noise_prompts"] == "1:1"


def test_the_active_limit_is_checked_with_the_creation(service: JobService) -> None:
    service.submit(tiny_request(), owner="alice", max_active=1)
    with pytest.raises(ActiveLimit):
        service.submit(tiny_request(seed=4), owner="alice", max_active=1)
    again, created = service.submit(
        tiny_request(), owner="alice", idempotency_key="k", max_active=2
    )
    assert created
    replay, created = service.submit(
        tiny_request(), owner="alice", idempotency_key="k", max_active=2
    )
    assert not created and replay.id == again.id


def test_delete_removes_record_and_files(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    start_worker()
    job, _ = service.submit(tiny_request(iterations=3))
    wait_for(lambda: finished(service, job.id), 60)
    directory = service.store.job_dir(job.id)
    assert directory.is_dir()
    assert service.delete(job.id)
    assert service.get(job.id) is None and not directory.exists()
    assert not service.delete(job.id)


@BOTH_QUEUES
def test_model_unavailable_fails_the_job(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    start_worker()
    # A catalog preset whose weights are not on disk: valid name, not loadable here.
    job, _ = service.submit(tiny_request(model="wikiart_16384"))
    done = wait_for(lambda: finished(service, job.id), 60)
    assert done.status == JobStatus.failed
    assert done.error.code == "model_unavailable"
    assert "wikiart_16384" in done.error.message
    # Clients learn the model and the command, never a path on the server.
    assert "artgen models download wikiart_16384" in done.error.message
    assert str(service.settings.home) not in done.error.message
    assert not re.search(r"/\w+/", done.error.message), done.error.message


@BOTH_QUEUES
def test_delete_queued_job_leaves_nothing_in_the_queue(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    job, _ = service.submit(tiny_request())
    assert service.delete(job.id)
    start_worker()
    wait_for(lambda: service.queue.pending_count() == 0, 10)
    wait_for(lambda: service.queue.peek(Keys.control(job.id)) is None, 10)
    assert service.queue.peek(Keys.claim(job.id, 1)) is None


@BOTH_QUEUES
def test_delete_running_job_stops_the_worker(
    service: JobService, start_worker: Callable[[], Any]
) -> None:
    handle = start_worker()
    job, _ = service.submit(tiny_request(iterations=2000))
    wait_for(lambda: service.get(job.id).iteration >= 2, 60)
    assert service.delete(job.id)
    wait_for(lambda: not handle.worker.info.busy, 10)
    keys = [Keys.attempt_key(kind, job.id, 1) for kind in Keys.ATTEMPT_KINDS]
    wait_for(lambda: service.queue.peek_many([*keys, Keys.control(job.id)]) == {}, 10)
    assert service.get(job.id) is None and service.events(job.id) == []
