"""The SSE generator on its own: replay, heartbeats, end on done, end on shutdown."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from artgen.api.routes import events as sse
from artgen.jobs.schemas import JobEvent, JobStatus


class ScriptedService:
    """Answers events() from a script: one list of new events per poll."""

    def __init__(self, script):
        self.script = list(script)
        self.afters = []

    def events(self, job_id, after=0):
        self.afters.append(after)
        batch = self.script.pop(0) if self.script else []
        return [event for event in batch if event.id > after]

    def get(self, job_id, owner=None):
        return SimpleNamespace(id=job_id, status=JobStatus.running)


def _request(draining=False):
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(draining=draining)))


async def _collect(generator, limit=50):
    frames = []
    async for frame in generator:
        frames.append(frame)
        if len(frames) >= limit:
            break
    return frames


def test_heartbeats_while_quiet_then_events_until_done(monkeypatch):
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.02)
    progress = JobEvent(id=3, type="progress", data={"iteration": 1})
    done = JobEvent(id=4, type="done", data={"status": "succeeded"})
    never = JobEvent(id=5, type="status", data={})
    service = ScriptedService([[]] * 6 + [[progress], [done, never]])
    frames = asyncio.run(_collect(sse.follow_events(_request(), service, "job", after=2)))
    assert frames[0].startswith("retry:")
    assert any(frame.startswith(": heartbeat") for frame in frames)
    data_frames = [frame for frame in frames if frame.startswith("id:")]
    assert data_frames == [
        'id: 3\nevent: progress\ndata: {"iteration":1}\n\n',
        'id: 4\nevent: done\ndata: {"status":"succeeded"}\n\n',
    ]
    assert service.afters[0] == 2 and service.afters[-1] == 3


def test_stream_ends_when_the_server_drains(monkeypatch):
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.01)
    frames = asyncio.run(
        _collect(sse.follow_events(_request(draining=True), ScriptedService([]), "job", 0))
    )
    assert frames[-1].startswith(": server shutting down")


class FinishedService:
    """A job that has ended: its events are stored and no new one will ever come."""

    def __init__(self, stored):
        self.stored = stored

    def events(self, job_id, after=0):
        return [event for event in self.stored if event.id > after]

    def get(self, job_id, owner=None):
        return SimpleNamespace(id=job_id, status=JobStatus.succeeded)


def test_resuming_at_or_past_the_end_of_a_finished_job_replays_done_and_closes(monkeypatch):
    # Every auto-reconnecting EventSource sends the last id it saw: here, that of `done`.
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.001)
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.001)
    monkeypatch.setattr(sse, "EXISTS_CHECK_SECONDS", 0.001)
    done = JobEvent(id=7, type="done", data={"status": "succeeded"})
    service = FinishedService([JobEvent(id=6, type="status", data={}), done])
    for after in (7, 8, 10**9):
        frames = asyncio.run(_collect(sse.follow_events(_request(), service, "job", after)))
        assert frames[1:] == ['id: 7\nevent: done\ndata: {"status":"succeeded"}\n\n'], frames


def test_a_done_frame_carries_the_urls_the_api_builds():
    done = JobEvent(id=9, type="done", data={"status": "succeeded", "image": True, "video": True})
    frame = sse.format_event(done, "job-1")
    assert frame == (
        'id: 9\nevent: done\ndata: {"status":"succeeded",'
        '"image_url":"/v1/jobs/job-1/image","video_url":"/v1/jobs/job-1/video"}\n\n'
    )
