"""The job resource: submit, list, read, preview/image/video, cancel, delete."""

from __future__ import annotations

import errno
import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse
from PIL import Image
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
from artgen.api.uploads import read_form, read_image_upload, read_json_body
from artgen.config import Settings
from artgen.jobs.schemas import (
    ACTIVE_STATUSES,
    Job,
    JobCreate,
    JobPublic,
    JobsPublic,
    JobStatus,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE = 100
# C0 controls other than tab/newline/CR, DEL and C1 controls: never meaningful in a prompt.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# json.loads accepts "\ud800" escapes; such text cannot be stored as UTF-8 (it was a 500).
_SURROGATES = re.compile(r"[\ud800-\udfff]")
MAX_IDEMPOTENCY_KEY_CHARS = 200
# How long a client should wait before retrying when the queue is full or we are draining.
RETRY_AFTER_SECONDS = 5
# A full disk is not freed in seconds.
DISK_FULL_RETRY_AFTER_SECONDS = 60

_MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "params": {"type": "string", "description": "the JobCreate fields as JSON text"},
        "init_image": {"type": "string", "format": "binary"},
        "image_prompts": {"type": "array", "items": {"type": "string", "format": "binary"}},
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
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        field = field_prefix[0] if field_prefix else "body"
        raise ApiError(
            422, "validation_error", f"{field}: not valid JSON ({exc})", field=field
        ) from exc
    if not isinstance(data, dict):
        field = field_prefix[0] if field_prefix else "body"
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


def check_limits(request: JobCreate, settings: Settings) -> None:
    """The server's own bounds on top of the schema's (prompt length, size, iterations)."""
    problems = []
    if len(request.prompts) > settings.max_prompt_chars:
        problems.append(("prompts", f"at most {settings.max_prompt_chars} characters"))
    for name in ("prompts", "noise_prompts"):
        if _CONTROL_CHARS.search(getattr(request, name)):
            problems.append((name, "contains control characters (tabs and newlines are fine)"))
    for name in ("width", "height"):
        if getattr(request, name) > settings.max_size:
            problems.append((name, f"at most {settings.max_size} on this server"))
    if request.iterations > settings.max_iterations:
        problems.append(("iterations", f"at most {settings.max_iterations} on this server"))
    if problems:
        details = [{"field": field, "message": message} for field, message in problems]
        raise ApiError(
            422,
            "validation_error",
            f"{problems[0][0]}: {problems[0][1]}",
            field=problems[0][0],
            details=details,
        )


def _shutting_down() -> ApiError:
    return ApiError(
        503,
        "shutting_down",
        "the server is shutting down and accepts no new jobs; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def check_has_prompt(request: JobCreate, has_image_prompts: bool) -> None:
    """A generation needs something to aim at: text, image or noise prompts."""
    if request.prompts.strip() or has_image_prompts or request.noise_prompts.strip():
        return
    raise ApiError(
        422,
        "validation_error",
        "prompts: must not be empty (or give image_prompts files)",
        field="prompts",
        details=[{"field": "prompts", "message": "must not be empty"}],
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
) -> tuple[Job, bool]:
    """Apply limits and hand the job to the service, mapping its refusals to HTTP errors."""
    from artgen.jobs.service import IdempotencyConflict, InvalidJob, QueueFull, ShuttingDown

    if getattr(request.app.state, "draining", False) or getattr(service, "draining", False):
        raise _shutting_down()
    check_limits(job_request, settings)
    check_has_prompt(job_request, bool(image_prompts))
    request.app.state.rate_limiter.check(caller_id(request, owner))
    if settings.max_active_jobs_per_key > 0 and owner is not None:
        active = sum(
            service.list(owner=owner, status=status, limit=1, offset=0)[1]
            for status in ACTIVE_STATUSES
        )
        check_active_jobs(active, settings.max_active_jobs_per_key)
    try:
        job, created = service.submit(
            job_request,
            init_image=init_image,
            image_prompts=image_prompts or (),
            owner=owner,
            idempotency_key=idempotency_key,
        )
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
        field = exc.field or "params"
        raise ApiError(
            422,
            "validation_error",
            str(exc),
            field=field,
            details=[{"field": field, "message": exc.message}],
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
) -> tuple[JobCreate, bytes | None, list[bytes]]:
    form = await read_form(request)
    try:
        allowed = {"params", "init_image", "image_prompts"}
        unknown = sorted(set(form.keys()) - allowed)
        if unknown:
            raise ApiError(
                422,
                "validation_error",
                f"{unknown[0]}: unknown form field (expected params, init_image, image_prompts)",
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
        return job_request, init_image, image_prompts
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
    if content_type == "multipart/form-data":
        job_request, init_image, image_prompts = await _read_multipart(request, settings)
    elif content_type in ("application/json", "") or content_type.endswith("+json"):
        job_request = parse_job_create(await read_json_body(request))
        init_image, image_prompts = None, []
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json, or multipart/form-data with a `params` field",
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


def _jpeg_bytes(path: Path) -> bytes:
    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_response(path: Path, image_format: str, headers: dict[str, str]) -> Response:
    """A stored PNG as PNG (streamed from disk) or converted to JPEG."""
    if image_format == "jpeg":
        return Response(_jpeg_bytes(path), media_type="image/jpeg", headers=headers)
    return FileResponse(path, media_type="image/png", headers=headers)


ImageFormat = Annotated[Literal["png", "jpeg"], Query(alias="format")]


@router.get(
    "/{job_id}/preview",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **_ERROR_RESPONSES},
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
        found = service.preview_file(str(job_id))
        if found is None:
            raise ApiError(404, "not_found", f"job {job_id} has no preview yet; retry in a moment")
        path, iteration = found
        return image_response(path, image_format, {"X-Iteration": str(iteration)})

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
        path = service.image_file(str(job_id)) if job.status == JobStatus.succeeded else None
        if path is None:
            raise _not_finished(job, "image")
        return image_response(path, image_format, {"X-Iteration": str(job.iteration)})

    return await run_in_threadpool(read)


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
    """The MP4 timelapse when the job asked for `video: true`."""

    def read() -> Response:
        job = job_or_404(service, job_id, owner)
        if not job.params.get("video"):
            raise ApiError(
                404, "not_found", f"job {job_id} did not ask for a video (`video: true`)"
            )
        path = service.video_file(str(job_id)) if job.status == JobStatus.succeeded else None
        if path is None:
            raise _not_finished(job, "video")
        return FileResponse(path, media_type="video/mp4")

    return await run_in_threadpool(read)


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
