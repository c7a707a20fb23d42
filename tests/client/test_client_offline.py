"""The client without a server: Retry-After, error parsing, the SSE parser, no torch at import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import httpx
import pytest

from artgen.api.schemas import JobPublic
from artgen.client import (
    AsyncClient,
    Client,
    RateLimited,
    RetryPolicy,
    Unavailable,
    ValidationFailed,
)
from artgen.client.sse import SSEParser, StreamResume
from artgen.jobs.schemas import Job

JOB_JSON = JobPublic.from_job(Job(id="job-1", params={}, iterations=4)).model_dump(mode="json")


def _error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": code, "message": f"{code} now", "details": []}}
    return httpx.Response(status, json=body, headers=headers)


def _client(answers: list[httpx.Response], **kwargs) -> tuple[Client, list[float], list]:
    sent: list[httpx.Request] = []
    slept: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0)

    client = Client(
        "http://artgen.test", transport=httpx.MockTransport(answer), sleep=slept.append, **kwargs
    )
    return client, slept, sent


def test_503_is_retried_after_its_retry_after() -> None:
    answers = [_error(503, "queue_full", "2"), _error(429, "rate_limited", "0.5")]
    answers.append(httpx.Response(202, json=JOB_JSON))
    client, slept, sent = _client(answers)
    job = client.submit(prompt="a castle", width=32, height=32)
    assert job.id == "job-1"
    assert slept == [2.0, 0.5]
    assert len(sent) == 3
    assert all(request.read() == sent[0].read() for request in sent)


def test_retries_are_bounded_and_the_error_keeps_retry_after() -> None:
    answers = [_error(429, "rate_limited", "1") for _ in range(3)]
    client, slept, sent = _client(answers, retry=RetryPolicy(max_retries=2))
    with pytest.raises(RateLimited) as caught:
        client.get("job-1")
    assert slept == [1.0, 1.0] and len(sent) == 3
    assert (caught.value.status_code, caught.value.code) == (429, "rate_limited")
    assert caught.value.retry_after == 1.0


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once() -> None:
    client, slept, _ = _client([_error(503, "shutting_down", "600")])
    with pytest.raises(Unavailable) as caught:
        client.list()
    assert slept == [] and caught.value.retry_after == 600.0


def test_a_503_without_retry_after_backs_off() -> None:
    answers = [_error(503, "unavailable"), _error(503, "unavailable")]
    answers.append(httpx.Response(200, json=JOB_JSON))
    client, slept, _ = _client(answers)
    assert client.get("job-1").id == "job-1"
    assert slept == [1.0, 2.0]


def test_other_errors_are_not_retried_and_carry_fields() -> None:
    body = {
        "error": {
            "code": "validation_error",
            "message": "width: too big",
            "field": "width",
            "details": [{"field": "width", "message": "too big"}],
        }
    }
    client, slept, sent = _client([httpx.Response(422, json=body)])
    with pytest.raises(ValidationFailed) as caught:
        client.get("job-1")
    assert (caught.value.field, caught.value.details[0].message) == ("width", "too big")
    assert slept == [] and len(sent) == 1


def test_an_error_body_not_in_our_shape_still_explains_itself() -> None:
    client, _, _ = _client([httpx.Response(502, text="Bad Gateway from the proxy")])
    with pytest.raises(Unavailable) as caught:
        client.get("job-1")
    assert caught.value.code == "http_502" and "Bad Gateway" in caught.value.message


def test_async_client_honours_retry_after() -> None:
    answers = [_error(503, "queue_full", "3"), httpx.Response(202, json=JOB_JSON)]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def scenario() -> str:
        transport = httpx.MockTransport(lambda request: answers.pop(0))
        async with AsyncClient("http://artgen.test", transport=transport, sleep=fake_sleep) as c:
            return (await c.submit(prompt="a castle")).id

    assert asyncio.run(scenario()) == "job-1"
    assert slept == [3.0]


def test_api_key_is_sent_in_its_header() -> None:
    client, _, sent = _client([httpx.Response(200, json=JOB_JSON)], api_key="secret")
    client.get("job-1")
    assert sent[0].headers["X-API-Key"] == "secret"


def test_sse_parser_follows_the_eventsource_rules() -> None:
    parser = SSEParser()
    lines = [
        "retry: 1500",
        "",
        ": heartbeat",
        "id: 7",
        "event: progress",
        'data: {"a":',
        "data: 1}",
    ]
    assert [parser.feed(line) for line in lines] == [None] * len(lines)
    event = parser.feed("")
    assert event is not None
    assert (event.id, event.type, event.data) == (7, "progress", {"a": 1})
    assert parser.retry_ms == 1500


def test_stream_resume_drops_repeats_and_gives_up_after_bounded_reconnects() -> None:
    resume = StreamResume(max_reconnects=2)
    for line in ["id: 1", "event: status", 'data: {"status": "running"}', ""]:
        resume.feed(line)
    assert resume.headers()["Last-Event-ID"] == "1"
    resume.start_connection()
    replayed = [resume.feed(line) for line in ["id: 1", "event: status", "data: {}", ""]]
    assert replayed == [None] * 4
    assert [resume.next_delay(), resume.next_delay(), resume.next_delay()] == [1.0, 1.0, None]


def test_importing_the_client_needs_no_torch_and_no_server_code() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "open_clip", "fastapi", "huey"):
                    raise ImportError(f"{name} is not installed (test)")
                return None

        sys.meta_path.insert(0, Refuse())
        import artgen.client
        from artgen.client import AsyncClient, Client, Job

        server = ("artgen.api", "artgen.jobs.service", "artgen.models")
        public = ("artgen.api", "artgen.api.schemas")  # the API's public schemas: no server code
        server_side = [n for n in sys.modules if n.startswith(server) and n not in public]
        assert not server_side, server_side
        print("imported")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
