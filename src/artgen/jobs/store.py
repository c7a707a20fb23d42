"""JobStore: job records and events in SQLite (WAL); job files written atomically under data_dir."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artgen.jobs.job_files import (
    CHECKPOINT,
    FINAL,
    PREVIEW,
    VIDEO,
    drop_missing_files,
    frame_file_name,
    sweep_job_dirs,
    validate_job_id,
    write_file_atomic,
)
from artgen.jobs.outbox import OUTBOX_SCHEMA, Outbox, PublicJson, webhook_events
from artgen.jobs.schemas import ACTIVE_STATUSES, Job, JobEvent, JobStatus

logger = logging.getLogger("artgen.jobs.store")

# Still imported from here by the collector's modules (their home is job_files.py).
__all__ = ["CHECKPOINT", "FINAL", "PREVIEW", "VIDEO", "JobStore", "QueueCleanup", "frame_file_name"]

_SCHEMA = """
create table if not exists jobs (
    id text primary key,
    owner text,
    status text not null,
    created_at text not null,
    enqueued_at text not null,
    data text not null
);
create index if not exists jobs_status on jobs (status, enqueued_at);
create index if not exists jobs_created on jobs (created_at);
create table if not exists events (
    id integer primary key autoincrement,
    job_id text not null,
    type text not null,
    data text not null
);
create index if not exists events_job on events (job_id, id);
create table if not exists idempotency (
    key_hash text primary key,
    body_hash text not null,
    job_id text not null
);
create table if not exists queue_cleanup (
    job_id text primary key,
    attempt integer not null,
    deleted integer not null,
    since real not null
);
"""


@dataclass(frozen=True)
class QueueCleanup:
    """A job that ended (or was deleted) whose traces the queue may still hold: a task message,
    a worker still running its attempt, report keys, the control key. The collector's audit
    repeats the stop signal while any of it may act, then clears every key and drops the row."""

    job_id: str
    attempt: int
    deleted: bool  # the record is gone: a worker drops the attempt's reports instead of sending
    since: float  # time.time() when the job ended or was deleted


class JobStore:
    """Job records, events and idempotency keys in SQLite; files under data_dir/jobs/<uuid>/."""

    def __init__(self, data_dir: Path, public_json: PublicJson | None = None) -> None:
        """`public_json`: the job's public JSON, the body of its webhook deliveries."""
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "jobs.sqlite3"
        # One connection shared by the API's threads; the lock makes each transaction atomic.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, timeout=30)
        self._conn.isolation_level = None
        self._conn.execute("pragma journal_mode=wal")
        self._conn.execute("pragma synchronous=full")
        self._conn.executescript(_SCHEMA)
        self._conn.executescript(OUTBOX_SCHEMA)
        # Webhook deliveries; written below in the transaction of the change that causes them.
        self.outbox = Outbox(self._transaction, public_json)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("begin immediate")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("rollback")
                raise
            self._conn.execute("commit")

    # Files

    def job_dir(self, job_id: str) -> Path:
        """The job's directory (the id is validated as a UUID first)."""
        return self.jobs_dir / validate_job_id(job_id)

    def file_path(self, job_id: str, name: str) -> Path:
        """Path of one of the job's files; name must be one of ours."""
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad job file name {name!r}")
        return self.job_dir(job_id) / name

    def write_file(self, job_id: str, name: str, data: bytes) -> Path:
        """Write one job file atomically (the caller records it afterwards)."""
        path = self.file_path(job_id, name)
        write_file_atomic(path, data)
        return path

    def read_file(self, job_id: str, name: str) -> bytes:
        """Bytes of one job file."""
        return self.file_path(job_id, name).read_bytes()

    def remove_dir(self, job_id: str) -> None:
        """Delete the job's directory (its record is gone)."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def remove_file(self, job_id: str, name: str) -> None:
        """Delete one job file if present (call after the record stopped pointing at it)."""
        self.file_path(job_id, name).unlink(missing_ok=True)

    # Records

    def _save(self, conn: sqlite3.Connection, job: Job) -> None:
        conn.execute(
            "insert or replace into jobs (id, owner, status, created_at, enqueued_at, data) "
            "values (?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.owner,
                job.status.value,
                job.created_at.isoformat(),
                job.enqueued_at.isoformat(),
                job.model_dump_json(),
            ),
        )

    def _add_events(
        self, conn: sqlite3.Connection, job_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        for event_type, data in events:
            conn.execute(
                "insert into events (job_id, type, data) values (?, ?, ?)",
                (job_id, event_type, json.dumps(data)),
            )

    def create(
        self,
        job: Job,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        idempotency: tuple[str, str] | None = None,
    ) -> None:
        """Insert a new job (with its first events and idempotency key) in one transaction."""
        with self._transaction() as conn:
            if idempotency is not None:
                key_hash, body_hash = idempotency
                conn.execute(
                    "insert into idempotency (key_hash, body_hash, job_id) values (?, ?, ?)",
                    (key_hash, body_hash, job.id),
                )
            self._save(conn, job)
            self._add_events(conn, job.id, events)

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        with self._lock:
            row = self._conn.execute("select data from jobs where id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def update(
        self,
        job_id: str,
        mutate: Callable[[Job], list[tuple[str, dict[str, Any]]] | None],
    ) -> Job | None:
        """Read-modify-write one job atomically; mutate may return events to append.

        A job that becomes terminal owes the queue a cleanup, and the webhook deliveries the
        change causes are queued in the outbox: both in the same transaction.
        """
        with self._transaction() as conn:
            row = conn.execute("select data from jobs where id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = Job.model_validate_json(row[0])
            was_terminal = job.status.terminal
            was_started = job.started_at is not None
            events = mutate(job)
            self._save(conn, job)
            if events:
                self._add_events(conn, job_id, events)
            if job.status.terminal and not was_terminal:
                self._owe_cleanup(conn, job_id, job.attempt, deleted=False)
            caused = webhook_events(
                job, events or [], was_started=was_started, was_terminal=was_terminal
            )
            self.outbox.record(conn, job, caused)
            return job

    def delete(self, job_id: str) -> Job | None:
        """Remove the record, its events and idempotency key, then its files; the job removed.

        Atomic: of concurrent deletes one gets the job, the others None. A job that may still have
        traces in the queue (active, or its cleanup pending) owes a cleanup, marked deleted."""
        with self._transaction() as conn:
            row = conn.execute("select data from jobs where id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = Job.model_validate_json(row[0])
            conn.execute("delete from jobs where id = ?", (job_id,))
            conn.execute("delete from events where job_id = ?", (job_id,))
            conn.execute("delete from idempotency where job_id = ?", (job_id,))
            pending = conn.execute(
                "select 1 from queue_cleanup where job_id = ?", (job_id,)
            ).fetchone()
            if job.status in ACTIVE_STATUSES or pending:
                self._owe_cleanup(conn, job_id, job.attempt, deleted=True)
        self.remove_dir(job_id)
        return job

    # Queue cleanups

    def _owe_cleanup(
        self, conn: sqlite3.Connection, job_id: str, attempt: int, *, deleted: bool
    ) -> None:
        conn.execute(
            "insert into queue_cleanup (job_id, attempt, deleted, since) values (?, ?, ?, ?) "
            "on conflict (job_id) do update set attempt = max(attempt, excluded.attempt), "
            "deleted = max(deleted, excluded.deleted), since = excluded.since",
            (job_id, int(attempt), int(deleted), time.time()),
        )

    def queue_cleanups(self) -> list[QueueCleanup]:
        """Ended or deleted jobs whose queue traces are not confirmed gone, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "select job_id, attempt, deleted, since from queue_cleanup order by since"
            ).fetchall()
        return [QueueCleanup(row[0], int(row[1]), bool(row[2]), float(row[3])) for row in rows]

    def cleanup_done(self, cleanup: QueueCleanup) -> None:
        """The queue holds nothing of the job any more (unless the job ended again since)."""
        with self._transaction() as conn:
            conn.execute(
                "delete from queue_cleanup where job_id = ? and since = ?",
                (cleanup.job_id, cleanup.since),
            )

    def list_jobs(
        self,
        owner: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and the total matching."""
        where, args = self._filter(owner, status)
        with self._lock:
            total = self._conn.execute(f"select count(*) from jobs{where}", args).fetchone()[0]
            rows = self._conn.execute(
                f"select data from jobs{where} order by created_at desc, rowid desc "
                "limit ? offset ?",
                (*args, limit, offset),
            ).fetchall()
        return [Job.model_validate_json(row[0]) for row in rows], total

    @staticmethod
    def _filter(owner: str | None, status: JobStatus | None) -> tuple[str, tuple[Any, ...]]:
        clauses, args = [], []
        if owner is not None:
            clauses.append("owner = ?")
            args.append(owner)
        if status is not None:
            clauses.append("status = ?")
            args.append(status.value)
        return (" where " + " and ".join(clauses) if clauses else ""), tuple(args)

    def active(self) -> list[Job]:
        """Queued and running jobs, in queue order."""
        marks = ",".join("?" * len(ACTIVE_STATUSES))
        with self._lock:
            rows = self._conn.execute(
                f"select data from jobs where status in ({marks}) order by enqueued_at, rowid",
                tuple(status.value for status in ACTIVE_STATUSES),
            ).fetchall()
        return [Job.model_validate_json(row[0]) for row in rows]

    def count_active(self, owner: str | None = None) -> int:
        """Queued plus running jobs (of one owner when given)."""
        marks = ",".join("?" * len(ACTIVE_STATUSES))
        args: tuple[Any, ...] = tuple(status.value for status in ACTIVE_STATUSES)
        query = f"select count(*) from jobs where status in ({marks})"
        if owner is not None:
            query, args = query + " and owner = ?", (*args, owner)
        with self._lock:
            row = self._conn.execute(query, args).fetchone()
        return int(row[0])

    def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each status."""
        with self._lock:
            rows = self._conn.execute("select status, count(*) from jobs group by status")
            return {status: count for status, count in rows.fetchall()}

    def queued_ahead(self, job: Job) -> int:
        """Queued jobs that workers take before this one (the queue is ordered by creation)."""
        with self._lock:
            row = self._conn.execute(
                "select count(*) from jobs where status = ? and created_at < ? and id != ?",
                (JobStatus.queued.value, job.created_at.isoformat(), job.id),
            ).fetchone()
        return int(row[0])

    def latest_job_id(self) -> str | None:
        """The most recently created job's id."""
        with self._lock:
            row = self._conn.execute(
                "select id from jobs order by created_at desc, rowid desc limit 1"
            ).fetchone()
        return row[0] if row else None

    # Events

    def add_events(self, job_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Append events to a job's stream."""
        with self._transaction() as conn:
            self._add_events(conn, job_id, events)

    def events(self, job_id: str, after: int = 0) -> list[JobEvent]:
        """The job's events with id > after, in order."""
        with self._lock:
            rows = self._conn.execute(
                "select id, type, data from events where job_id = ? and id > ? order by id",
                (job_id, after),
            ).fetchall()
        return [JobEvent(id=row[0], type=row[1], data=json.loads(row[2])) for row in rows]

    # Idempotency

    def idempotent_job(self, key_hash: str) -> tuple[str, str] | None:
        """(job_id, body_hash) recorded under this key hash, or None."""
        with self._lock:
            row = self._conn.execute(
                "select job_id, body_hash from idempotency where key_hash = ?", (key_hash,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    # Recovery

    def recover(self) -> list[str]:
        """Remove temp files and orphan dirs; drop record fields that point at missing files."""
        with self._lock:
            known = {row[0] for row in self._conn.execute("select id from jobs").fetchall()}
        notes = sweep_job_dirs(self.jobs_dir, known)
        for job_id in known:
            job = self.get(job_id)
            if job is not None and any(
                not self.file_path(job_id, name).is_file() for name in job.file_names()
            ):
                self.update(job_id, self._drop_missing_files)
                notes.append(f"dropped missing files of {job_id}")
        for note in notes:
            logger.warning("recover: %s", note)
        return notes

    def _drop_missing_files(self, job: Job) -> None:
        def present(name: str | None) -> bool:
            return name is not None and self.file_path(job.id, name).is_file()

        drop_missing_files(job, present)
