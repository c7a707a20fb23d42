"""JobQueue: Huey (SqliteHuey or RedisHuey from one URL) carrying job tasks and worker reports."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from huey import Huey, PriorityRedisHuey, SqliteHuey
from huey.api import Task
from huey.constants import EmptyData

from artgen.jobs.keys import Keys

logger = logging.getLogger("artgen.jobs.queue")

TASK_NAME = "artgen.run_job"

# What a worker does with a task: handler(job_id, attempt, payload).
TaskHandler = Callable[[str, int, Mapping[str, Any]], None]
# The payload entries that carry bytes (uploads, the checkpoint): kept out of the task message.
INPUT_FIELDS = ("init_image", "image_prompts", "checkpoint", "source_video")
# Frame keys past the last collected one that a cleanup deletes (a worker stops within a step of
# being superseded or canceled, so it cannot have written many more).
FRAME_CLEANUP_WINDOW = 64


class InputsMissing(Exception):
    """A task's input bytes are no longer in the queue storage (it lost data): hand it back."""


def decode_message(message: str) -> dict[str, Any]:
    """The task message's JSON: {"params": {...}, "inputs": whether an inputs key was written}."""
    decoded = json.loads(message)
    if not isinstance(decoded, dict):
        raise ValueError("a task message must be a JSON object")
    return decoded


class TaskPayload(Mapping[str, Any]):
    """A task's payload read lazily: the params are decoded from the message on first use, the
    input bytes fetched from the attempt's inputs key on first use (only by whoever runs it)."""

    def __init__(self, queue: JobQueue, job_id: str, attempt: int, message: str) -> None:
        self._queue, self._job_id, self._attempt = queue, job_id, attempt
        self._message = message
        self._decoded: dict[str, Any] | None = None
        self._inputs: dict[str, Any] | None = None

    def _message_fields(self) -> dict[str, Any]:
        if self._decoded is None:
            self._decoded = decode_message(self._message)
        return self._decoded

    def _input_fields(self) -> dict[str, Any]:
        if self._inputs is None:
            if not self._message_fields().get("inputs"):
                self._inputs = {}
            else:
                found = self._queue.peek(Keys.inputs(self._job_id, self._attempt))
                if not isinstance(found, dict):
                    raise InputsMissing(
                        f"job {self._job_id} attempt {self._attempt}: its inputs are gone"
                    )
                self._inputs = found
        return self._inputs

    def __getitem__(self, key: str) -> Any:
        if key == "params":
            return self._message_fields().get("params", {})
        if key in INPUT_FIELDS:
            inputs = self._input_fields()
            if key in inputs:
                return inputs[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield "params"
        yield from (name for name in INPUT_FIELDS if name in self._input_fields())

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class QueuedTask:
    """A job task waiting in the queue, as a batching worker sees it (left in place)."""

    task_id: str
    job_id: str
    attempt: int
    payload: Mapping[str, Any]


def _split_name(url: str, default: str) -> tuple[str, str]:
    """Take an optional `name=` query parameter (a key namespace) out of a queue URL."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    names = [value for key, value in pairs if key == "name"]
    rest = urlencode([(key, value) for key, value in pairs if key != "name"])
    name = names[-1] if names else default
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"queue URL {url!r}: name must be letters, digits and underscores")
    return (f"{base}?{rest}" if rest else base), name


def _sqlite_path(url: str) -> Path:
    """sqlite:///relative/path or sqlite:////absolute/path (also sqlite:///abs from config)."""
    rest = url[len("sqlite:///") :]
    if not rest:
        raise ValueError(
            f"queue URL {url!r}: give a file, e.g. sqlite:///artgen-data/queue.sqlite3"
        )
    return Path(rest)


class JobQueue:
    """The task queue and the key-value store that workers report through."""

    def __init__(self, huey: Huey, url: str) -> None:
        self.huey = huey
        self.url = url
        self._handler: TaskHandler | None = None
        self._task: Any = None

    @classmethod
    def from_url(cls, url: str, name: str = "artgen") -> JobQueue:
        """Build Huey from sqlite:///path (embedded) or redis://host:port/db (scale-out).

        An optional `?name=...` namespaces the keys, so deployments can share one Redis.
        """
        huey: Huey
        location, name = _split_name(url, name)
        if location.startswith("sqlite:///"):
            path = _sqlite_path(location)
            path.parent.mkdir(parents=True, exist_ok=True)
            huey = SqliteHuey(name, filename=str(path), results=False, timeout=30)
        elif location.startswith(("redis://", "rediss://", "unix://")):
            from redis import ConnectionPool  # only the Redis backend needs the package

            # Timeouts so a dead Redis raises (and is retried with backoff) instead of hanging.
            pool = ConnectionPool.from_url(
                location, socket_connect_timeout=3, socket_timeout=10, health_check_interval=15
            )
            # The priority flavour (a sorted set, Redis >= 5) so requeued jobs keep their place.
            huey = PriorityRedisHuey(name, connection_pool=pool, results=False, read_timeout=1)
        else:
            raise ValueError(
                f"queue URL {url!r}: use sqlite:///path/to/queue.sqlite3 or redis://host:6379/0"
            )
        queue = cls(huey, url)

        def run_job(job_id: str, attempt: int, message: str | dict[str, Any]) -> None:
            queue._dispatch(job_id, attempt, queue._payload(job_id, attempt, message))

        queue._task = huey.task(name=TASK_NAME)(run_job)
        return queue

    @property
    def embedded(self) -> bool:
        """True for the SQLite queue, whose only worker runs inside the API process."""
        return self.url.startswith("sqlite:")

    def close(self) -> None:
        """Release the storage's connections."""
        self.huey.storage.close()

    # Tasks

    def set_handler(self, handler: TaskHandler | None) -> None:
        """What this process does with the tasks it dequeues (workers only)."""
        self._handler = handler

    def _dispatch(self, job_id: str, attempt: int, payload: Mapping[str, Any]) -> None:
        if self._handler is None:
            raise RuntimeError("this JobQueue has no task handler: it is not a worker")
        self._handler(job_id, attempt, payload)

    def _payload(
        self, job_id: str, attempt: int, message: str | dict[str, Any]
    ) -> Mapping[str, Any]:
        """The lazy payload of a task message (a dict: a message queued by an older version)."""
        if isinstance(message, dict):
            return message
        return TaskPayload(self, str(job_id), int(attempt), message)

    def enqueue(
        self, job_id: str, attempt: int, payload: Mapping[str, Any], *, order: float | None = None
    ) -> None:
        """Queue one attempt of a job: payload holds its params and input bytes (and checkpoint).

        The bytes go under the attempt's inputs key and the message carries only the params, so
        whoever reads the queue (the audit, a batching worker) never handles upload bytes.
        Tasks with a smaller `order` (the job's creation time) are taken first, so a job requeued
        after its worker died, or whose message was lost, keeps its place ahead of later jobs.
        The attempt is published first (the control record a worker checks before running it).
        """
        self.set_control(job_id, attempt)
        inputs = {name: payload[name] for name in INPUT_FIELDS if payload.get(name)}
        if inputs:
            self.put(Keys.inputs(job_id, attempt), inputs)
        message = json.dumps({"params": payload.get("params", {}), "inputs": bool(inputs)})
        task = self._task.s(job_id, attempt, message)
        if order is not None:
            task.priority = -order  # Huey takes higher priorities first, FIFO among equals
        self.huey.enqueue(task)

    def dequeue(self) -> Task | None:
        """The next task, or None (the Redis storage blocks up to a second)."""
        return self.huey.dequeue()

    def execute(self, task: Task) -> None:
        """Run a dequeued task through Huey (which calls the handler)."""
        self.huey.execute(task)

    @property
    def blocking(self) -> bool:
        """Whether dequeue() waits for work itself (Redis) or must be polled (SQLite)."""
        return bool(self.huey.storage.blocking)

    def queued_tasks(self, limit: int | None = None) -> list[QueuedTask]:
        """The first `limit` waiting tasks, in the order workers take them; none is removed.

        Their payloads are read only when used (params from the message, bytes from a key)."""
        found = []
        for data in self.huey.storage.enqueued_items(limit):
            try:
                task = self.huey.deserialize_task(data)
                job_id, attempt, message = task.args
                payload = self._payload(job_id, attempt, message)
                found.append(QueuedTask(str(task.id), str(job_id), int(attempt), payload))
            except Exception:
                logger.warning("unreadable task in the queue", exc_info=True)
        return found

    def queued_attempts(self) -> set[tuple[str, int]]:
        """(job_id, attempt) of every task waiting in the queue (no payload is decoded)."""
        found = set()
        for data in self.huey.storage.enqueued_items():
            try:
                job_id, attempt, _ = self.huey.deserialize_task(data).args
                found.add((str(job_id), int(attempt)))
            except Exception:
                logger.warning("unreadable task in the queue", exc_info=True)
        return found

    def revoke(self, task_id: str) -> None:
        """Make a waiting task a no-op when it is dequeued (a batching worker took its job)."""
        self.huey.revoke_by_id(task_id, revoke_once=True)

    def pending_count(self) -> int:
        """Tasks waiting in the queue."""
        return int(self.huey.pending_count())

    def ping(self) -> None:
        """Raise if the storage cannot be reached."""
        self.huey.storage.queue_size()

    def flush(self) -> None:
        """Remove every task and key of this queue (tests)."""
        self.huey.storage.flush_all()

    # Key-value reports

    def put(self, key: str, value: Any) -> None:
        """Store a value under key (overwrites)."""
        self.huey.put(key, value)

    def put_if_empty(self, key: str, value: Any) -> bool:
        """Store only if the key is free; True if stored."""
        return bool(self.huey.put_if_empty(key, value))

    def peek(self, key: str) -> Any:
        """The value under key, or None."""
        return self.huey.get(key, peek=True)

    def pop(self, key: str) -> Any:
        """Remove and return the value under key, or None."""
        return self.huey.get(key, peek=False)

    def delete(self, key: str) -> None:
        """Remove the key if present."""
        self.huey.delete(key)

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values present among keys, in one round trip per 500 keys."""
        keys = list(keys)
        found: dict[str, Any] = {}
        storage = self.huey.storage
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            if hasattr(storage, "peek_many"):
                raw = storage.peek_many(chunk)
            else:
                raw = {key: storage.peek_data(key) for key in chunk}
            for key, data in raw.items():
                if data is None or data is EmptyData:
                    continue
                name = key.decode() if isinstance(key, bytes) else key
                found[name] = self.huey.serializer.deserialize(data)
        return found

    def incr(self, key: str, amount: int = 1) -> int:
        """Atomically add to a counter and return its value."""
        return int(self.huey.storage.incr(key, amount))

    # Job control (read by workers every iteration)

    def set_control(
        self, job_id: str, attempt: int, *, cancel: bool = False, deleted: bool = False
    ) -> None:
        """Publish the job's current attempt and whether it must stop."""
        self.put(Keys.control(job_id), {"attempt": attempt, "cancel": cancel, "deleted": deleted})

    def control(self, job_id: str) -> dict[str, Any] | None:
        """The job's control record, or None."""
        value = self.peek(Keys.control(job_id))
        return value if isinstance(value, dict) else None

    def clear_job(self, job_id: str, attempts: int, *, keep_control: bool = False) -> None:
        """Delete every report and inputs key of attempts 1..attempts (and the control key)."""
        for attempt in range(1, attempts + 1):
            for kind in Keys.ATTEMPT_KINDS:
                self.delete(Keys.attempt_key(kind, job_id, attempt))
            self.delete(Keys.inputs(job_id, attempt))
        if not keep_control:
            self.delete(Keys.control(job_id))

    def clear_frames(self, job_id: str, attempt: int, start: int) -> None:
        """Delete the attempt's frame keys from `start` on (within FRAME_CLEANUP_WINDOW)."""
        for index in range(max(0, start), max(0, start) + FRAME_CLEANUP_WINDOW):
            self.delete(Keys.frame(job_id, attempt, index))

    # Workers

    def register_worker(self) -> int:
        """A fresh registration slot for a starting worker."""
        return self.incr(Keys.WORKER_SEQ, 1)

    def workers(self, window: int = 256) -> list[dict[str, Any]]:
        """Registrations of the most recent `window` workers."""
        last = self.incr(Keys.WORKER_SEQ, 0)
        slots = range(max(1, last - window + 1), last + 1)
        found = self.peek_many(Keys.worker(slot) for slot in slots)
        return [value for value in found.values() if isinstance(value, dict)]
