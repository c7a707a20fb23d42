"""artgen.jobs.submission: a new job is enqueued from the bytes it holds; a requeue reads files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jobtools import tiny_request

from artgen.config import Settings
from artgen.jobs.queue import JobQueue
from artgen.jobs.store import JobStore
from artgen.jobs.submission import JobInputs, QueueFull, Submitter, build_payload


class RecordingQueue:
    """The one call a submission makes on the queue, recorded."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, int, dict[str, Any]]] = []

    def enqueue(self, job_id: str, attempt: int, payload: dict[str, Any], order: float) -> None:
        self.enqueued.append((job_id, attempt, payload))


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "data")


def _submitter(tmp_path: Path, store: JobStore, queue: RecordingQueue, **fields: Any) -> Submitter:
    settings = Settings(data_dir=tmp_path / "data", home=tmp_path / "home", model="tiny", **fields)
    fake: Any = queue  # duck-typed JobQueue: only enqueue is called
    recorded: JobQueue = fake
    return Submitter(settings, store, recorded)


def test_a_fresh_job_is_enqueued_from_the_bytes_it_holds(
    tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = RecordingQueue()
    submitter = _submitter(tmp_path, store, queue)

    def no_reading_back(job_id: str, name: str) -> bytes:
        raise AssertionError(f"read back {name} it just wrote")

    monkeypatch.setattr(store, "read_file", no_reading_back)
    inputs = JobInputs(init_image=b"init-bytes", image_prompts=(b"prompt-0", b"prompt-1"))
    job, created = submitter.submit(tiny_request(), inputs)
    assert created
    [(job_id, attempt, payload)] = queue.enqueued
    assert (job_id, attempt) == (job.id, 1)
    assert payload["init_image"] == b"init-bytes"
    assert payload["image_prompts"] == [b"prompt-0", b"prompt-1"]
    assert payload["params"] == job.params
    # The files are stored all the same (a requeue reads them).
    assert store.file_path(job.id, job.init_image_file or "").read_bytes() == b"init-bytes"


def test_a_requeue_reads_the_same_payload_from_the_store(tmp_path: Path, store: JobStore) -> None:
    queue = RecordingQueue()
    inputs = JobInputs(init_image=b"init-bytes", image_prompts=(b"prompt-0",))
    job, _ = _submitter(tmp_path, store, queue).submit(tiny_request(), inputs)
    stored = store.get(job.id)
    assert stored is not None
    assert build_payload(store, stored) == queue.enqueued[0][2]


def test_the_queue_limit_is_checked_before_anything_is_stored(
    tmp_path: Path, store: JobStore
) -> None:
    queue = RecordingQueue()
    submitter = _submitter(tmp_path, store, queue, queue_limit=1)
    submitter.submit(tiny_request(), JobInputs())
    with pytest.raises(QueueFull):
        submitter.submit(tiny_request(seed=5), JobInputs(init_image=b"x"))
    assert len(queue.enqueued) == 1
    assert store.count_active() == 1
