"""JobQueue on both engines: tasks round-trip with their payload, reports, control, workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtools import REDIS_URL, redis_available

from artgen.jobs import queue as queue_module
from artgen.jobs.queue import JobQueue, Keys


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobQueue]:
    """A queue on each engine; the Redis one uses a unique name (key prefix) and is flushed."""
    if request.param == "sqlite":
        queue = JobQueue.from_url(f"sqlite:///{tmp_path / 'queue.sqlite3'}")
    else:
        if not redis_available():
            pytest.skip(f"no redis-server answering at {REDIS_URL}")
        queue = JobQueue.from_url(f"{REDIS_URL}?name=artgen_test_{uuid.uuid4().hex}")
        assert queue.huey.name.startswith("artgen_test_")
    yield queue
    queue.flush()
    queue.close()


def test_task_round_trip_carries_payload_bytes(queue: JobQueue) -> None:
    received: list[tuple[str, int, dict[str, Any]]] = []
    queue.set_handler(
        lambda job_id, attempt, payload: received.append((job_id, attempt, dict(payload)))
    )
    payload = {"params": {"prompts": "x"}, "init_image": b"\x89PNG\x00\xff", "image_prompts": []}
    queue.enqueue("job-1", 1, payload)
    queue.enqueue("job-2", 3, {"params": {}})
    assert queue.queued_attempts() == {("job-1", 1), ("job-2", 3)}
    assert queue.pending_count() == 2

    for _ in range(2):
        task = queue.dequeue()
        assert task is not None
        queue.execute(task)
    # Empty entries are not carried: the worker's defaults are the same.
    expected = {"params": {"prompts": "x"}, "init_image": b"\x89PNG\x00\xff"}
    assert received == [("job-1", 1, expected), ("job-2", 3, {"params": {}})]
    assert queue.dequeue() is None
    assert queue.queued_attempts() == set()


def test_enqueue_publishes_the_attempts_control_record(queue: JobQueue) -> None:
    queue.set_control("job", 1, cancel=True)
    queue.enqueue("job", 2, {})
    assert queue.control("job") == {"attempt": 2, "cancel": False, "deleted": False}


def test_a_queue_without_handler_cannot_run_tasks(queue: JobQueue) -> None:
    queue.enqueue("job", 1, {})
    with pytest.raises(RuntimeError, match="not a worker"):
        queue._dispatch("job", 1, {})


def test_key_value_reports(queue: JobQueue) -> None:
    key = Keys.progress("job", 1)
    assert queue.peek(key) is None
    queue.put(key, {"attempt": 1, "iteration": 5})
    queue.put(Keys.preview("job", 1), {"png": b"\x00" * 1000})
    assert queue.peek(key) == {"attempt": 1, "iteration": 5}
    found = queue.peek_many([key, Keys.preview("job", 1), Keys.result("job", 1)])
    assert set(found) == {key, Keys.preview("job", 1)}
    assert queue.pop(Keys.preview("job", 1)) == {"png": b"\x00" * 1000}
    assert queue.pop(Keys.preview("job", 1)) is None

    assert queue.put_if_empty(Keys.claim("job", 1), "a")
    assert not queue.put_if_empty(Keys.claim("job", 1), "b")
    assert queue.peek(Keys.claim("job", 1)) == "a"

    queue.set_control("job", 2, cancel=True)
    assert queue.control("job") == {"attempt": 2, "cancel": True, "deleted": False}
    queue.clear_job("job", 2)
    assert queue.peek_many([key, Keys.claim("job", 1), Keys.control("job")]) == {}


def test_worker_registrations(queue: JobQueue) -> None:
    first, second = queue.register_worker(), queue.register_worker()
    assert second == first + 1
    queue.put(Keys.worker(first), {"id": "w1"})
    queue.put(Keys.worker(second), {"id": "w2"})
    assert sorted(worker["id"] for worker in queue.workers()) == ["w1", "w2"]
    queue.ping()


def test_bad_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        JobQueue.from_url("amqp://localhost")
    with pytest.raises(ValueError, match="give a file"):
        JobQueue.from_url("sqlite:///")
    with pytest.raises(ValueError, match="name must be"):
        JobQueue.from_url("redis://127.0.0.1:6379/0?name=a-b")


def test_keys_are_per_attempt() -> None:
    assert Keys.progress("j", 1) != Keys.progress("j", 2)
    with pytest.raises(ValueError):
        Keys.attempt_key("nonsense", "j", 1)


def test_order_puts_older_jobs_first(queue: JobQueue) -> None:
    """A requeued job (created earlier) is taken before jobs created after it; FIFO otherwise."""
    queue.set_handler(lambda job_id, attempt, payload: None)
    queue.enqueue("newer", 1, {}, order=2000.0)
    queue.enqueue("newer-twin", 1, {}, order=2000.0)
    queue.enqueue("older", 2, {}, order=1000.0)
    queue.enqueue("newest", 1, {}, order=3000.0)
    taken = []
    while (task := queue.dequeue()) is not None:
        taken.append(task.args[0])
    assert taken == ["older", "newer", "newer-twin", "newest"]


def test_upload_bytes_stay_out_of_task_messages_and_are_read_only_when_used(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 MiB upload travels under the attempt's inputs key: listing the queue (the audit, a
    batching worker) decodes no payload and reads no upload; the worker that runs it does."""
    upload = bytes(range(256)) * 4096
    payload = {"params": {"prompts": "x"}, "init_image": upload, "image_prompts": [upload]}
    for index in range(3):
        queue.enqueue(f"job-{index}", 1, payload)
    assert max(len(data) for data in queue.huey.storage.enqueued_items()) < 4096

    decoded: list[str] = []
    real_decode = queue_module.decode_message
    monkeypatch.setattr(
        queue_module,
        "decode_message",
        lambda message: decoded.append(message) or real_decode(message),
    )
    read: list[str] = []
    real_peek = queue.peek
    monkeypatch.setattr(queue, "peek", lambda key: read.append(key) or real_peek(key))
    assert queue.queued_attempts() == {(f"job-{index}", 1) for index in range(3)}
    tasks = queue.queued_tasks(2)
    assert decoded == [] and read == []
    assert tasks[0].payload["params"] == {"prompts": "x"} and read == []
    assert tasks[0].payload["init_image"] == upload and read == [Keys.inputs("job-0", 1)]

    # Cleared with the job's other keys.
    queue.clear_job("job-0", 1)
    assert queue.peek(Keys.inputs("job-0", 1)) is None
    with pytest.raises(queue_module.InputsMissing):
        queue.queued_tasks(1)[0].payload.get("init_image")


def test_a_message_queued_by_an_older_version_still_runs(queue: JobQueue) -> None:
    """Older API hosts put the whole payload (bytes included) in the message: workers read it."""
    received: list[Any] = []
    queue.set_handler(lambda job_id, attempt, payload: received.append(payload))
    legacy = {"params": {"prompts": "x"}, "init_image": b"\x89PNG", "image_prompts": []}
    queue.huey.enqueue(queue._task.s("job", 1, legacy))
    task = queue.dequeue()
    assert task is not None
    queue.execute(task)
    assert received == [legacy]
