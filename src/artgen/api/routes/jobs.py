"""The job resource: submit, list, read, preview/image/video, cancel, delete."""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from artgen.api.deps import (
    JobIdPath,
    OwnerDep,
    ServiceDep,
    SettingsDep,
    caller_id,
    job_or_404,
)
from artgen.api.errors import ApiError, validation_error
from artgen.api.security import check_active_jobs
from artgen.api.uploads import read_form, read_image_upload, read_json_body, read_source_video
from artgen.config import Settings
from artgen.jobs.schemas import (
    Job,
    JobCreate,
    JobPublic,
    JobsPublic,
    JobStatus,
)
from artgen.media import png_to_jpeg

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE = 100
# json.loads accepts "\ud800" escapes; such text cannot be stored as UTF-8 (it was a 500).
_SURROGATES = re.compile(r"[\ud800-\udfff]")
MAX_IDEMPOTENCY_KEY_CHARS = 200
# JobCreate nests three levels (schedule -> entry -> text); deeper JSON is an attack on the parser.
MAX_JSON_DEPTH = 16
# How long a client should wait before retrying when the queue is full or we are draining.
RETRY_AFTER_SECONDS = 5
STREAM_CHUNK_BYTES = 64 * 1024
# A full disk is not freed in seconds.
DISK_FULL_RETRY_AFTER_SECONDS = 60

_MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "params": {"type": "string", "description": "the JobCreate fields as JSON text"},
        "init_image": {"type": "string", "format": "binary"},
        "image_prompts": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "source_video": {
            "type": "string",
            "format": "binary",
            "description": 'kind "restyle": the MP4, WebM or animated GIF to repaint',
        },
    },
    "required": ["params"],
    # Any other field is refused with 422 (unknown form field).
    "additionalProperties": False,
}
SUBMIT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such job (or another key's job)"},
    422: {"description": "invalid id or parameters"},
}


def to_public(service: Any, job: Job) -> JobPublic:
    """The public view of a job, with its queue position when queued."""
    position = service.queue_position(job) if job.status == JobStatus.queued else None
    return JobPublic.from_job(job, queue_position=position)


def parse_job_create(raw: bytes | str, field_prefix: tuple[str, ...] = ()) -> JobCreate:
    """JobCreate from JSON text; 422 naming the field on any problem."""
    field = field_prefix[0] if field_prefix else "body"
    too_deep = ApiError(
        422,
        "validation_error",
        f"{field}: JSON nested deeper than {MAX_JSON_DEPTH} levels; job parameters are flat",
        field=field,
    )
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise too_deep from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            422, "validation_error", f"{field}: not valid JSON ({exc})", field=field
        ) from exc
    if _nested_deeper_than(data, MAX_JSON_DEPTH):
        raise too_deep
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", f"{field}: must be a JSON object", field=field)
    bad_text = _lone_surrogate_path(data)
    if bad_text is not None:
        field = ".".join((*field_prefix, *bad_text)) or "body"
        raise ApiError(
            422,
            "validation_error",
            f"{field}: contains a lone UTF-16 surrogate escape (e.g. \\ud800); "
            "send valid Unicode text",
            field=field,
        )
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(), prefix=field_prefix) from exc


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _lone_surrogate_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where JSON text holds a lone surrogate (valid JSON, but no UTF-8 can store it)."""
    if isinstance(value, str):
        return path if _SURROGATES.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATES.search(str(key)):
                return path
            found = _lone_surrogate_path(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None


def _shutting_down() -> ApiError:
    return ApiError(
        503,
        "shutting_down",
        "the server is shutting down and accepts no new jobs; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def submit_job(
    service: Any,
    settings: Settings,
    request: Request,
    owner: str | None,
    job_request: JobCreate,
    *,
    init_image: bytes | None = None,
    image_prompts: list[bytes] | None = None,
    idempotency_key: str | None = None,
    source_video: Any = None,
) -> tuple[Job, bool]:
    """Hand the job to the service (which validates it and applies every limit atomically).

    Its refusals become HTTP errors; an idempotent replay counts against no limit.
    """
    from artgen.jobs.service import (
        ActiveLimit,
        IdempotencyConflict,
        InvalidJob,
        QueueFull,
        ShuttingDown,
    )

    if getattr(request.app.state, "draining", False) or getattr(service, "draining", False):
        raise _shutting_down()
    caller = caller_id(request, owner)
    try:
        job, created = service.submit(
            job_request,
            init_image=init_image,
            image_prompts=image_prompts or (),
            owner=owner,
            idempotency_key=idempotency_key,
            max_active=settings.max_active_jobs_per_key,
            admit=lambda: request.app.state.rate_limiter.check(caller),
            source_video=source_video,
        )
    except ActiveLimit as exc:
        check_active_jobs(exc.active, exc.limit)
        raise
    except QueueFull as exc:
        raise ApiError(
            503,
            "queue_full",
            str(exc) or "the queue is full; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    except IdempotencyConflict as exc:
        raise ApiError(
            409,
            "idempotency_conflict",
            str(exc) or "this Idempotency-Key was used with another request body",
            field="Idempotency-Key",
        ) from exc
    except InvalidJob as exc:
        raise ApiError(
            422,
            "validation_error",
            str(exc),
            field=exc.field,
            details=[{"field": field, "message": message} for field, message in exc.details],
        ) from exc
    except ShuttingDown as exc:
        raise _shutting_down() from exc
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_disk_full(exc):
            raise
        raise ApiError(
            507,
            "disk_full",
            "the server's disk is full, so the job was not stored; retry later",
            headers={"Retry-After": str(DISK_FULL_RETRY_AFTER_SECONDS)},
        ) from exc
    metrics = getattr(request.app.state, "metrics", None)
    if created and metrics is not None:
        metrics.submitted.inc()
    return job, created


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from a file write, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise ApiError(
            422,
            "validation_error",
            f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable characters",
            field="Idempotency-Key",
        )
    return key


async def _read_multipart(
    request: Request, settings: Settings
) -> tuple[JobCreate, bytes | None, list[bytes], Any]:
    form = await read_form(request)
    try:
        allowed = {"params", "init_image", "image_prompts", "source_video"}
        unknown = sorted(set(form.keys()) - allowed)
        if unknown:
            raise ApiError(
                422,
                "validation_error",
                f"{unknown[0]}: unknown form field "
                "(expected params, init_image, image_prompts, source_video)",
                field=unknown[0],
            )
        params_values = form.getlist("params")
        if len(params_values) != 1 or not isinstance(params_values[0], str):
            raise ApiError(
                422,
                "validation_error",
                "params: give exactly one `params` form field with the job's JSON",
                field="params",
            )
        job_request = parse_job_create(params_values[0], ("params",))
        init_image = None
        init_values = form.getlist("init_image")
        if len(init_values) > 1:
            raise ApiError(
                422, "validation_error", "init_image: at most one file", field="init_image"
            )
        for value in init_values:
            init_image = await _image_field(value, "init_image", settings)
        image_prompts = []
        for index, value in enumerate(form.getlist("image_prompts")):
            image_prompts.append(await _image_field(value, f"image_prompts.{index}", settings))
        source_video = await read_source_video(
            form.getlist("source_video"), job_request.kind, settings.video_limits()
        )
        return job_request, init_image, image_prompts, source_video
    finally:
        await form.close()


async def _image_field(value: Any, field: str, settings: Settings) -> bytes:
    if not isinstance(value, UploadFile):
        raise ApiError(422, "validation_error", f"{field}: must be a file", field=field)
    return await read_image_upload(
        value, field, settings.max_upload_bytes, settings.max_image_pixels
    )


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    openapi_extra=SUBMIT_OPENAPI,
    summary="Submit a generation job (JSON, or multipart with images)",
    responses={
        400: {"description": "malformed multipart body, or too many files or fields"},
        409: {"description": "Idempotency-Key reused with another body"},
        413: {"description": "upload over the limit"},
        415: {"description": "upload is not PNG, JPEG or WebP"},
        422: {"description": "invalid parameters"},
        429: {"description": "rate or active-job limit of this key"},
        503: {"description": "queue full or shutting down"},
        507: {"description": "the server's disk is full (`disk_full`); nothing was stored"},
    },
)
async def create_job(
    request: Request,
    response: Response,
    service: ServiceDep,
    settings: SettingsDep,
    owner: OwnerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=f"1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters",
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_CHARS,
            pattern=r"^[ -~]+$",
        ),
    ] = None,
) -> JobPublic:
    """Queue a job; 202 with Location. Same Idempotency-Key and body: the same job again."""
    key = _check_idempotency_key(idempotency_key)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    source_video = None
    if content_type == "multipart/form-data":
        job_request, init_image, image_prompts, source_video = await _read_multipart(
            request, settings
        )
    elif content_type in ("application/json", "") or content_type.endswith("+json"):
        job_request = parse_job_create(await read_json_body(request))
        init_image, image_prompts = None, []
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type or '(none)'!r} is not accepted: send application/json, "
            "or multipart/form-data with a `params` field",
            field="Content-Type",
        )
    job, created = await run_in_threadpool(
        submit_job,
        service,
        settings,
        request,
        owner,
        job_request,
        init_image=init_image,
        image_prompts=image_prompts,
        idempotency_key=key,
        source_video=source_video,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return await run_in_threadpool(to_public, service, job)


@router.get("", response_model=JobsPublic, summary="List jobs, newest first")
async def list_jobs(
    service: ServiceDep,
    owner: OwnerDep,
    status: Annotated[JobStatus | None, Query(description="only jobs with this status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobsPublic:
    """A page of the caller's jobs."""

    def page() -> JobsPublic:
        jobs, total = service.list(owner=owner, status=status, limit=limit, offset=offset)
        items = [to_public(service, job) for job in jobs]
        return JobsPublic(items=items, total=total, limit=limit, offset=offset)

    return await run_in_threadpool(page)


@router.get("/{job_id}", response_model=JobPublic, responses=_ERROR_RESPONSES)
async def get_job(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> JobPublic:
    """One job: status, progress, ETA, params, urls."""

    def read() -> JobPublic:
        return to_public(service, job_or_404(service, job_id, owner))

    return await run_in_threadpool(read)


def open_stored_file(job_id: str, path: Path) -> BinaryIO:
    """The file opened once (a DELETE may remove it at any moment); 404 when it is gone."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise _deleted(job_id) from None


def _deleted(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"job {job_id} was deleted")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(STREAM_CHUNK_BYTES):
            yield chunk


def file_response(handle: BinaryIO, media_type: str, headers: dict[str, str]) -> Response:
    """Stream an open file: once open, a DELETE that unlinks it no longer cuts the body short."""
    size = os.fstat(handle.fileno()).st_size
    return StreamingResponse(
        _chunks(handle), media_type=media_type, headers={**headers, "Content-Length": str(size)}
    )


def image_response(handle: BinaryIO, image_format: str, headers: dict[str, str]) -> Response:
    """A stored PNG as PNG (streamed from the open file) or converted to JPEG."""
    if image_format == "jpeg":
        with handle:
            return Response(png_to_jpeg(handle), media_type="image/jpeg", headers=headers)
    return file_response(handle, "image/png", headers)


ImageFormat = Annotated[Literal["png", "jpeg"], Query(alias="format")]


@router.get(
    "/{job_id}/preview",
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}},
        409: {"description": "the job ended without a preview (`job_ended`)"},
        **_ERROR_RESPONSES,
    },
    response_class=Response,
)
async def get_preview(
    job_id: JobIdPath,
    service: ServiceDep,
    owner: OwnerDep,
    image_format: ImageFormat = "png",
) -> Response:
    """The latest intermediate image; header X-Iteration; 404 before the first one."""

    def read() -> Response:
        job_or_404(service, job_id, owner)
        found = service.preview_file(job_id)
        if found is None:
            # Read again: the job may have ended or been deleted since.
            job = service.get(job_id)
            if job is None:
                raise _deleted(job_id)
            if job.status.terminal:
                raise ApiError(
                    409,
                    "job_ended",
                    f"job {job_id} ended as {job.status.value} without any preview; "
                    "none will come" + (" (its image is at /image)" if job.image_file else ""),
                )
            raise ApiError(404, "not_found", f"job {job_id} has no preview yet; retry in a moment")
        path, iteration = found
        handle = open_stored_file(job_id, path)
        return image_response(handle, image_format, {"X-Iteration": str(iteration)})

    return await run_in_threadpool(read)


@router.get(
    "/{job_id}/image",
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}},
        409: {"description": "not finished"},
        **_ERROR_RESPONSES,
    },
    response_class=Response,
)
async def get_image(
    job_id: JobIdPath,
    service: ServiceDep,
    owner: OwnerDep,
    image_format: ImageFormat = "png",
) -> Response:
    """The final image; 409 `not_finished` until the job has succeeded."""

    def read() -> Response:
        job = job_or_404(service, job_id, owner)
        path = _finished_file(service, job, service.image_file, "image")
        handle = open_stored_file(job_id, path)
        return image_response(handle, image_format, {"X-Iteration": str(job.iteration)})

    return await run_in_threadpool(read)


def _finished_file(service: Any, job: Job, lookup: Callable[[str], Path | None], what: str) -> Path:
    """The path of a succeeded job's file; 409 before it succeeded, 404 once deleted."""
    path = lookup(job.id) if job.status == JobStatus.succeeded else None
    if path is not None:
        return path
    # Read again: a DELETE may have removed the record since it was read.
    current = service.get(job.id)
    if current is None:
        raise _deleted(job.id)
    raise _not_finished(current, what)


def _not_finished(job: Job, what: str) -> ApiError:
    if job.status.terminal:
        return ApiError(
            409,
            "not_finished",
            f"job {job.id} ended as {job.status.value}; it has no {what}",
        )
    return ApiError(
        409,
        "not_finished",
        f"job {job.id} is {job.status.value} ({job.iteration}/{job.iterations}); "
        f"the {what} is ready when it succeeds",
    )


@router.get(
    "/{job_id}/video",
    responses={
        200: {"content": {"video/mp4": {}}},
        409: {"description": "not finished"},
        **_ERROR_RESPONSES,
    },
    response_class=Response,
)
async def get_video(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> Response:
    """The MP4 timelapse when the job asked for `video: true`; an animation's or restyle's video
    (once succeeded, or a partial one after a cancel)."""

    def read() -> Response:
        job = job_or_404(service, job_id, owner)
        if job.kind.animated:
            path = service.video_file(job.id)
            if path is None:
                raise _animation_video_missing(service, job)
            return file_response(open_stored_file(job_id, path), "video/mp4", {})
        if not job.params.get("video"):
            raise ApiError(
                404, "not_found", f"job {job_id} did not ask for a video (`video: true`)"
            )
        path = _finished_file(service, job, service.video_file, "video")
        return file_response(open_stored_file(job_id, path), "video/mp4", {})

    return await run_in_threadpool(read)


def _animation_video_missing(service: Any, job: Job) -> ApiError:
    """404 once deleted; 409 while running, or when it ended without frames."""
    current = service.get(job.id)
    if current is None:
        return _deleted(job.id)
    if current.status.terminal:
        what = f"ended as {current.status.value} without a video (no frames were made)"
        return ApiError(409, "not_finished", f"job {job.id} {what}")
    return ApiError(
        409,
        "not_finished",
        f"job {job.id} is {current.status.value} (frame {current.frames_done} of "
        f"{current.frames}); the video is ready when it succeeds or is canceled",
    )


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=_ERROR_RESPONSES)
async def cancel_job(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> JobPublic:
    """Cancel (idempotent): a queued job never starts, a running one stops within an iteration."""

    def cancel() -> JobPublic:
        job = service.cancel(str(job_id), owner=owner)
        if job is None:
            raise ApiError(404, "not_found", f"no job with id {job_id}")
        return to_public(service, job)

    return await run_in_threadpool(cancel)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=_ERROR_RESPONSES)
async def delete_job(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> Response:
    """Remove the job's record and files (a running job is canceled first)."""
    deleted = await run_in_threadpool(service.delete, str(job_id), owner)
    if not deleted:
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    return Response(status_code=204)
