"""Client: the artgen HTTP API from Python (httpx, blocking)."""

from __future__ import annotations

import builtins
import contextlib
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class Client:
    """A connection to one artgen server: `Client("http://gpu-box:8000", api_key=...)`.

    Jobs come back as the server's own `JobPublic`; errors as `ApiError` subclasses carrying
    the server's code, message and field. 429 and 503 answers are retried after their
    Retry-After (at most `retry.max_retries` times).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=client_headers(api_key),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        retries = 0
        while True:
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as error:
                raise ArtgenConnectionError(f"{method} {url}: {error}") from error
            delay = self.retry.delay(response, retries)
            if delay is None:
                return check(response)
            retries += 1
            self._sleep(delay)

    def submit(
        self,
        request: JobCreate | Mapping[str, Any] | None = None,
        *,
        init_image: FileInput | None = None,
        image_prompts: Sequence[FileInput] = (),
        source_video: FileInput | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> JobPublic:
        """Queue a job: `submit(prompt="a castle", width=64, height=64)` or a JobCreate.

        Images (and a restyle's `source_video`) go as bytes or paths; the server checks them.
        """
        kwargs = submit_request(
            job_create(request, fields), init_image, image_prompts, idempotency_key, source_video
        )
        return JobPublic.model_validate_json(self._request("POST", "/v1/jobs", **kwargs).content)

    def get(self, job_id: str) -> JobPublic:
        """One job's current state."""
        return JobPublic.model_validate_json(self._request("GET", f"/v1/jobs/{job_id}").content)

    def list(self, status: str | None = None, limit: int = 20, offset: int = 0) -> JobsPublic:
        """A page of jobs, newest first."""
        response = self._request("GET", "/v1/jobs", params=list_query(status, limit, offset))
        return JobsPublic.model_validate_json(response.content)

    def cancel(self, job_id: str) -> JobPublic:
        """Ask the job to stop (idempotent); a running job stops within a step."""
        return JobPublic.model_validate_json(
            self._request("POST", f"/v1/jobs/{job_id}/cancel").content
        )

    def delete(self, job_id: str) -> None:
        """Delete the job's record and files (a running job is canceled first by the server)."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def events(self, job_id: str, last_event_id: int | None = None) -> Iterator[ServerEvent]:
        """The job's events until `done`, reconnecting with Last-Event-ID when the stream drops."""
        resume = StreamResume(last_event_id)
        timeout = stream_timeout(self._http.timeout)
        while not resume.done:
            resume.start_connection()
            try:
                with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/events", headers=resume.headers(), timeout=timeout
                ) as response:
                    if not response.is_success:
                        response.read()
                        check(response)
                    for line in response.iter_lines():
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
            self._sleep(delay)

    def wait(self, job_id: str, on_event: Callable[[ServerEvent], None] | None = None) -> JobPublic:
        """Follow the job until it ends; its final state (check `.status`)."""
        for event in self.events(job_id):
            if on_event is not None:
                on_event(event)
        return self.get(job_id)

    def image(self, job_id: str, image_format: str = "png") -> bytes:
        """The final image (PNG with the parameters in its metadata, or JPEG)."""
        return self._request(
            "GET", f"/v1/jobs/{job_id}/image", params={"format": image_format}
        ).content

    def preview(self, job_id: str, image_format: str = "png") -> tuple[int, bytes]:
        """(iteration, image) of the latest intermediate; NotFound before the first."""
        response = self._request(
            "GET", f"/v1/jobs/{job_id}/preview", params={"format": image_format}
        )
        return int(response.headers.get("X-Iteration", "0")), response.content

    def video(self, job_id: str) -> bytes:
        """The MP4 timelapse of a job submitted with `video=True`."""
        return self._request("GET", f"/v1/jobs/{job_id}/video").content

    def generate(
        self,
        prompt: str | builtins.list[str],
        *,
        on_event: Callable[[ServerEvent], None] | None = None,
        init_image: FileInput | None = None,
        image_prompts: Sequence[FileInput] = (),
        **fields: Any,
    ) -> Image.Image:
        """Submit, follow and fetch: the finished picture (its PNG metadata in `.info`).

        Raises JobFailed when the job fails or is canceled; Ctrl-C cancels the job on the server.
        """
        job = self.submit(
            prompt=prompt, init_image=init_image, image_prompts=image_prompts, **fields
        )
        try:
            final = self.wait(job.id, on_event)
        except KeyboardInterrupt:
            self._cancel_quietly(job.id)
            raise
        if final.status != "succeeded":
            raise JobFailed(final)
        picture = Image.open(io.BytesIO(self.image(job.id)))
        picture.load()
        return picture

    def _cancel_quietly(self, job_id: str) -> None:
        # The job may have ended or gone, or the server be unreachable: nothing more to do then.
        with contextlib.suppress(NotFound, ArtgenConnectionError):
            self.cancel(job_id)
