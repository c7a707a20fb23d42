"""Server-Sent Events of one job: replay after Last-Event-ID, then follow until `done`."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from artgen.api.deps import JobIdPath, OwnerDep, ServiceDep, job_or_404
from artgen.api.errors import ApiError
from artgen.api.schemas import public_event_data
from artgen.jobs.schemas import JobEvent
from artgen.jobs.service import JobService

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
# How often a quiet stream looks at the job: deleted (the stream ends) or ended (done is replayed).
EXISTS_CHECK_SECONDS = 2.0
MAX_EVENT_ID = 2**63 - 1


def format_event(event: JobEvent, job_id: str) -> str:
    """One SSE frame: id, event type and JSON data (a `done` event with its URLs)."""
    public = public_event_data(job_id, event.type, event.data)
    data = json.dumps(public, separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


def _parse_last_event_id(header: str | None, query: int | None) -> int:
    if query is not None:
        return query
    if header is None or not header.strip():
        return 0
    try:
        value = int(header.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_EVENT_ID:
        raise ApiError(
            422,
            "validation_error",
            "Last-Event-ID: must be a non-negative integer (an event id this stream sent)",
            field="Last-Event-ID",
        )
    return value


async def follow_events(
    request: Request, service: JobService, job_id: str, after: int
) -> AsyncIterator[str]:
    """Yield SSE frames for events with id > `after` until `done` or shutdown.

    A job that has ended sends nothing new: a client resuming at or past its `done` (every
    auto-reconnecting EventSource sends the last id it saw) gets `done` again and the stream ends.
    """
    # A client disconnect cancels this generator: StreamingResponse listens for it.
    last_sent = time.monotonic()
    last_job_check = -math.inf  # the first quiet poll looks at the job at once
    yield "retry: 1000\n\n"
    while True:
        events = await run_in_threadpool(service.events, job_id, after)
        for event in events:
            after = event.id
            yield format_event(event, job_id)
            if event.type == "done":
                return
        now = time.monotonic()
        if events:
            last_sent = now
        elif now - last_job_check >= EXISTS_CHECK_SECONDS:
            last_job_check = now
            job = await run_in_threadpool(service.get, job_id)
            if job is None:
                return
            if job.status.terminal:
                # Its done event is at or before `after` (written with the final status).
                done = await run_in_threadpool(_last_done_event, service, job_id)
                if done is not None:
                    yield format_event(done, job_id)
                return
        if not events and now - last_sent >= HEARTBEAT_SECONDS:
            last_sent = now
            yield ": heartbeat\n\n"
        if getattr(request.app.state, "draining", False):
            yield ": server shutting down; reconnect with Last-Event-ID\n\n"
            return
        await asyncio.sleep(POLL_SECONDS)


def _last_done_event(service: JobService, job_id: str) -> JobEvent | None:
    done = [event for event in service.events(job_id, 0) if event.type == "done"]
    return done[-1] if done else None


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the event stream"},
        404: {"description": "no such job"},
    },
)
async def job_events(
    request: Request,
    job_id: JobIdPath,
    service: ServiceDep,
    owner: OwnerDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="resume after this event id")
    ] = None,
) -> StreamingResponse:
    """progress, preview, status and a final done; ids increase; Last-Event-ID resumes."""
    after = _parse_last_event_id(last_event_id_header, last_event_id)
    await run_in_threadpool(job_or_404, service, job_id, owner)
    return StreamingResponse(
        follow_events(request, service, str(job_id), after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
