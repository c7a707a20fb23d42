"""AsyncClient: the artgen HTTP API from asyncio code (httpx.AsyncClient); Client's twin."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from PIL import Image

from artgen.api.schemas import JobPublic, JobsPublic
from artgen.client.errors import ArtgenConnectionError, JobFailed, NotFound
from artgen.client.protocol import (
    DEFAULT_TIMEOUT_S,
    FileInput,
    RetryPolicy,
    check,
    client_headers,
    job_create,
    list_query,
    stream_timeout,
    submit_request,
)
from artgen.client.sse import ServerEvent, StreamResume
from artgen.jobs.schemas import JobCreate


class AsyncClient:
    """`async with AsyncClient(url) as client: job = await client.submit(prompt=...)`.

    The same methods as Client, awaited; `events` is an async iterator.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=client_headers(api_key),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        retries = 0
        while True:
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as error:
                raise ArtgenConnectionError(f"{method} {url}: {error}") from error
            delay = self.retry.delay(response, retries)
            if delay is None:
                return check(response)
            retries += 1
            await self._sleep(delay)

    async def submit(
        self,
        request: JobCreate | Mapping[str, Any] | None = None,
        *,
        init_image: FileInput | None = None,
        image_prompts: Sequence[FileInput] = (),
        source_video: FileInput | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> JobPublic:
        """Queue a job: `await submit(prompt="a castle", width=64, height=64)` or a JobCreate.

        Images (and a restyle's `source_video`) go as bytes or paths; the server checks them.
        """
        kwargs = submit_request(
            job_create(request, fields), init_image, image_prompts, idempotency_key, source_video
        )
        response = await self._request("POST", "/v1/jobs", **kwargs)
        return JobPublic.model_validate_json(response.content)

    async def get(self, job_id: str) -> JobPublic:
        """One job's current state."""
        response = await self._request("GET", f"/v1/jobs/{job_id}")
        return JobPublic.model_validate_json(response.content)

    async def list(self, status: str | None = None, limit: int = 20, offset: int = 0) -> JobsPublic:
        """A page of jobs, newest first."""
        response = await self._request("GET", "/v1/jobs", params=list_query(status, limit, offset))
        return JobsPublic.model_validate_json(response.content)

    async def cancel(self, job_id: str) -> JobPublic:
        """Ask the job to stop (idempotent)."""
        response = await self._request("POST", f"/v1/jobs/{job_id}/cancel")
        return JobPublic.model_validate_json(response.content)

    async def delete(self, job_id: str) -> None:
        """Delete the job's record and files."""
        await self._request("DELETE", f"/v1/jobs/{job_id}")

    async def events(
        self, job_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[ServerEvent]:
        """The job's events until `done`, reconnecting with Last-Event-ID when the stream drops."""
        resume = StreamResume(last_event_id)
        timeout = stream_timeout(self._http.timeout)
        while not resume.done:
            resume.start_connection()
            try:
                async with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/events", headers=resume.headers(), timeout=timeout
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        check(response)
                    async for line in response.aiter_lines():
                        event = resume.feed(line)
                        if event is not None:
                            yield event
                            if resume.done:
                                return
            except httpx.TransportError as error:
                broke: Exception = error
            else:
                broke = ArtgenConnectionError("the event stream ended before `done`")
            delay = resume.next_delay()
            if delay is None:
                raise ArtgenConnectionError(f"event stream of job {job_id}: {broke}") from broke
            await self._sleep(delay)

    async def wait(
        self, job_id: str, on_event: Callable[[ServerEvent], None] | None = None
    ) -> JobPublic:
        """Follow the job until it ends; its final state (check `.status`)."""
        async for event in self.events(job_id):
            if on_event is not None:
                on_event(event)
        return await self.get(job_id)

    async def image(self, job_id: str, image_format: str = "png") -> bytes:
        """The final image (PNG with the parameters in its metadata, or JPEG)."""
        url = f"/v1/jobs/{job_id}/image"
        return (await self._request("GET", url, params={"format": image_format})).content

    async def preview(self, job_id: str, image_format: str = "png") -> tuple[int, bytes]:
        """(iteration, image) of the latest intermediate; NotFound before the first."""
        url = f"/v1/jobs/{job_id}/preview"
        response = await self._request("GET", url, params={"format": image_format})
        return int(response.headers.get("X-Iteration", "0")), response.content

    async def video(self, job_id: str) -> bytes:
        """The MP4 timelapse of a job submitted with `video=True`."""
        return (await self._request("GET", f"/v1/jobs/{job_id}/video")).content

    async def generate(
        self,
        prompt: str | builtins.list[str],
        *,
        on_event: Callable[[ServerEvent], None] | None = None,
        init_image: FileInput | None = None,
        image_prompts: Sequence[FileInput] = (),
        **fields: Any,
    ) -> Image.Image:
        """Submit, follow and fetch: the finished picture; a cancelled task cancels the job."""
        job = await self.submit(
            prompt=prompt, init_image=init_image, image_prompts=image_prompts, **fields
        )
        try:
            final = await self.wait(job.id, on_event)
        except (KeyboardInterrupt, asyncio.CancelledError):
            with contextlib.suppress(NotFound, ArtgenConnectionError):
                await asyncio.shield(self.cancel(job.id))
            raise
        if final.status != "succeeded":
            raise JobFailed(final)
        picture = Image.open(io.BytesIO(await self.image(job.id)))
        picture.load()
        return picture
