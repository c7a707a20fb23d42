"""artgen.client against a real `artgen serve --model tiny`: jobs, events, errors, keys."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from artgen.client import (
    AsyncClient,
    Client,
    Conflict,
    Job,
    JobFailed,
    JobStatus,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from artgen.media import read_parameters
from support import small_job

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def client(server) -> Iterator[Client]:
    with Client(server.url, api_key=server.api_key) as client:
        yield client


def _long_job() -> dict:
    """Runs for minutes on the tiny models unless canceled."""
    return small_job(iterations=10_000, cutn=2, preview_every=1000)


def test_submit_get_list_wait_and_image(client: Client) -> None:
    job = client.submit(**small_job(seed=3))
    assert isinstance(job, Job)
    assert job.status in (JobStatus.queued, JobStatus.running)
    assert client.get(job.id).id == job.id
    assert job.id in [item.id for item in client.list(limit=100).items]

    final = client.wait(job.id)
    assert final.status == JobStatus.succeeded
    assert final.iteration == 4
    assert client.list(status="succeeded", limit=100).total >= 1
    png = client.image(job.id)
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (32, 32)
        assert read_parameters(picture)["seed"] == 3
    iteration, preview = client.preview(job.id)
    assert iteration >= 2 and preview.startswith(b"\x89PNG")


def test_generate_returns_the_picture_with_its_metadata(client: Client) -> None:
    fields = small_job()
    picture = client.generate(fields.pop("prompts"), **fields)
    assert picture.size == (32, 32)
    assert read_parameters(picture)["iterations"] == 4


def test_submit_with_an_init_image_sends_multipart(client: Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buffer, "PNG")
    job = client.submit(init_image=buffer.getvalue(), **small_job(init_weight=0.5))
    assert client.wait(job.id).status == JobStatus.succeeded


class _BreakAfterFirstEvent(httpx.SyncByteStream):
    """Passes the body through up to the end of its first event, then the connection 'drops'."""

    def __init__(self, inner: httpx.SyncByteStream) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in self.inner:
            buffer += chunk
            start = buffer.find(b"id:")
            end = buffer.find(b"\n\n", start) if start >= 0 else -1
            if end >= 0:
                yield buffer[: end + 2]
                self.inner.close()
                raise httpx.ReadError("connection dropped by the test")

    def close(self) -> None:
        self.inner.close()


class DropFirstEventStream(httpx.BaseTransport):
    """The real network, except that the first event stream breaks after one event."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.event_requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.event_requests.append(request)
        if len(self.event_requests) > 1:
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        stream = _BreakAfterFirstEvent(response.stream)
        return httpx.Response(response.status_code, headers=response.headers, stream=stream)

    def close(self) -> None:
        self.inner.close()


def test_events_resume_with_last_event_id_after_a_dropped_stream(server) -> None:
    transport = DropFirstEventStream()
    slept: list[float] = []
    with Client(server.url, server.api_key, transport=transport, sleep=slept.append) as client:
        job = client.submit(**small_job(iterations=6))
        followed = list(client.events(job.id))
        # Replayed from the start once the job ended: every event the job has.
        everything = list(client.events(job.id, last_event_id=0))

    assert len(transport.event_requests) == 3
    first, second = transport.event_requests[:2]
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == str(followed[0].id)
    assert slept == [1.0]  # the server's `retry: 1000`
    ids = [event.id for event in followed]
    assert ids == [event.id for event in everything]
    assert len(set(ids)) == len(ids)
    assert followed[-1].type == "done" and followed[-1].data["status"] == "succeeded"
    assert {"progress", "status"} <= {event.type for event in followed}


def test_cancel_then_delete(client: Client) -> None:
    job = client.submit(**_long_job())
    canceled = client.cancel(job.id)
    assert canceled.id == job.id
    final = client.wait(job.id)
    assert final.status == JobStatus.canceled
    with pytest.raises(Conflict) as refused:
        client.image(job.id)
    assert (refused.value.status_code, refused.value.code) == (409, "not_finished")
    client.delete(job.id)
    with pytest.raises(NotFound) as caught:
        client.get(job.id)
    assert caught.value.status_code == 404 and caught.value.code == "not_found"
    assert job.id in caught.value.message


def test_generate_raises_job_failed_when_the_job_is_canceled(client: Client) -> None:
    seen: list[str] = []

    def cancel_at_first_event(event) -> None:
        if not seen:
            client.cancel(job_ids[0])
        seen.append(event.type)

    job_ids: list[str] = []
    original_submit = client.submit

    def submit(*args, **kwargs) -> Job:
        job = original_submit(*args, **kwargs)
        job_ids.append(job.id)
        return job

    client.submit = submit  # type: ignore[method-assign]
    fields = _long_job()
    with pytest.raises(JobFailed) as caught:
        client.generate(fields.pop("prompts"), on_event=cancel_at_first_event, **fields)
    assert caught.value.job.status == JobStatus.canceled
    assert "canceled" in str(caught.value)


def test_server_validation_error_carries_code_and_field(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.submit(**small_job(model="no-such-model"))
    error = caught.value
    assert (error.status_code, error.code, error.field) == (422, "validation_error", "model")
    assert "no-such-model" in error.message
    with pytest.raises(ValidationFailed) as caught:
        client.submit(**small_job(iterations=20_000))
    assert caught.value.field == "iterations"
    assert [detail.field for detail in caught.value.details] == ["iterations"]


def test_fields_the_schema_refuses_fail_before_sending(server) -> None:
    requests: list[httpx.Request] = []
    transport = httpx.HTTPTransport()

    def forward(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return transport.handle_request(request)

    with Client(server.url, server.api_key, transport=httpx.MockTransport(forward)) as client:
        with pytest.raises(ValidationFailed) as caught:
            client.submit(**small_job(width=-5))
        assert caught.value.field == "width"
        with pytest.raises(ValidationFailed) as caught:
            client.submit(**small_job(colour="red"))
        assert caught.value.field == "colour" and "unknown field" in caught.value.message
    assert requests == []


def test_api_keys(server, client: Client) -> None:
    job = client.submit(**small_job())
    with Client(server.url) as anonymous, pytest.raises(Unauthorized) as caught:
        anonymous.get(job.id)
    assert (caught.value.status_code, caught.value.code) == (401, "unauthorized")
    with Client(server.url, api_key="wrong") as wrong, pytest.raises(Unauthorized):
        wrong.list()
    with Client(server.url, api_key=server.other_key) as other:
        with pytest.raises(NotFound):
            other.get(job.id)
        assert job.id not in [item.id for item in other.list(limit=100).items]
    client.wait(job.id)


def test_async_client_submits_follows_and_fetches(server) -> None:
    async def scenario() -> tuple[Job, list[str], bytes]:
        async with AsyncClient(server.url, api_key=server.api_key) as client:
            job = await client.submit(**small_job(seed=5))
            types = [event.type async for event in client.events(job.id)]
            final = await client.get(job.id)
            listed = await client.list(limit=100)
            assert job.id in [item.id for item in listed.items]
            return final, types, await client.image(job.id)

    final, types, png = asyncio.run(scenario())
    assert final.status == JobStatus.succeeded
    assert types[-1] == "done"
    with Image.open(io.BytesIO(png)) as picture:
        assert read_parameters(picture)["seed"] == 5
