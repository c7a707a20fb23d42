"""The webhook outbox: deliveries owed to a job's webhook, rows in the job store's SQLite database.

A row is written in the same transaction as the status change or event that causes it (see
JobStore.update), so a delivery exists exactly when its cause was recorded, and survives any
crash after that. `artgen.jobs.webhooks.Deliverer` sends the rows and deletes them.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from artgen.jobs.schemas import Job

# The job's public JSON (what a webhook posts): given by the API layer (api.schemas.public_json),
# so the jobs layer neither builds the API's view nor its URLs.
PublicJson = Callable[[Job], str]

OUTBOX_SCHEMA = """
create table if not exists webhook_outbox (
    id integer primary key autoincrement,
    delivery_id text not null unique,
    job_id text not null,
    event text not null,
    url text not null,
    body text not null,
    created_at real not null,
    next_at real not null,
    tries integer not null default 0,
    last_error text
);
create index if not exists webhook_outbox_job on webhook_outbox (job_id, id);
"""

_COLUMNS = "id, delivery_id, job_id, event, url, body, created_at, next_at, tries, last_error"


@dataclass(frozen=True)
class Delivery:
    """One POST owed to a webhook; delivery_id stays the same across retries."""

    id: int
    delivery_id: str
    job_id: str
    event: str
    url: str
    body: str  # the job's public JSON when the event happened
    created_at: float
    next_at: float  # not tried again before this time.time()
    tries: int  # failed attempts so far
    last_error: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Delivery:
        """A row selected with _COLUMNS."""
        return cls(
            int(row[0]), row[1], row[2], row[3], row[4], row[5], float(row[6]), float(row[7]),
            int(row[8]), row[9],
        )  # fmt: skip


def webhook_events(
    job: Job,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    was_started: bool,
    was_terminal: bool,
) -> list[str]:
    """The webhook events one change of `job` causes, among those the job asked for.

    start: the job started for the first time (a requeued job does not start again);
    progress: a progress event of a job still running; completed: it became terminal.
    """
    if not job.webhook:
        return []
    caused = []
    if not was_started and job.started_at is not None:
        caused.append("start")
    if not job.status.terminal and any(kind == "progress" for kind, _ in events):
        caused.append("progress")
    if job.status.terminal and not was_terminal:
        caused.append("completed")
    return [event for event in caused if event in job.webhook_events]


class Outbox:
    """Reads and writes webhook_outbox through the job store's transactions."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
        public_json: PublicJson | None = None,
    ) -> None:
        self._transaction = transaction
        self._public_json = public_json

    def record(
        self, conn: sqlite3.Connection, job: Job, events: Sequence[str], now: float | None = None
    ) -> None:
        """Queue one delivery per event inside the caller's transaction.

        A progress delivery not tried yet is a stale snapshot once a newer progress or the
        completion is queued: it is dropped (one that failed keeps being retried under its id).
        """
        if not events or not job.webhook:
            return
        if self._public_json is None:
            raise RuntimeError(
                f"job {job.id} has a webhook but this JobStore was made without `public_json`"
            )
        now = time.time() if now is None else now
        body = self._public_json(job)
        for event in events:
            if event in ("progress", "completed"):
                conn.execute(
                    "delete from webhook_outbox where job_id = ? and event = 'progress' "
                    "and tries = 0",
                    (job.id,),
                )
            conn.execute(
                "insert into webhook_outbox (delivery_id, job_id, event, url, body, created_at, "
                "next_at) values (?, ?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, job.id, event, job.webhook, body, now, now),
            )

    def due(self, now: float | None = None, limit: int = 16) -> list[Delivery]:
        """The oldest delivery of each job, where it is due: a job's deliveries go in order."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            rows = conn.execute(
                f"select {_COLUMNS} from webhook_outbox as row where next_at <= ? and id = "
                "(select min(id) from webhook_outbox where job_id = row.job_id) "
                "order by id limit ?",
                (now, limit),
            ).fetchall()
        return [Delivery.from_row(row) for row in rows]

    def pending(self, job_id: str | None = None) -> list[Delivery]:
        """Every delivery not yet made or given up (of one job when given), oldest first."""
        where, args = (" where job_id = ?", (job_id,)) if job_id is not None else ("", ())
        with self._transaction() as conn:
            rows = conn.execute(
                f"select {_COLUMNS} from webhook_outbox{where} order by id", args
            ).fetchall()
        return [Delivery.from_row(row) for row in rows]

    def remove(self, delivery: Delivery) -> None:
        """Delivered, or given up: the row goes."""
        with self._transaction() as conn:
            conn.execute("delete from webhook_outbox where id = ?", (delivery.id,))

    def retry_later(self, delivery: Delivery, next_at: float, error: str) -> None:
        """A failed attempt: count it and try again at next_at."""
        with self._transaction() as conn:
            conn.execute(
                "update webhook_outbox set tries = tries + 1, next_at = ?, last_error = ? "
                "where id = ?",
                (next_at, error[:500], delivery.id),
            )
