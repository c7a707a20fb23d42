"""POST /v1/jobs: parse the request (JSON or multipart), hand it to the service, map refusals."""

from __future__ import annotations

import errno
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from artgen.api.deps import OwnerDep, ServiceDep, SettingsDep, caller_id
from artgen.api.errors import ApiError
from artgen.api.job_body import parse_job_create
from artgen.api.routes.jobs import to_public
from artgen.api.schemas import JobPublic
from artgen.api.security import check_active_jobs
from artgen.api.uploads import read_form, read_image_upload, read_json_body, read_source_video
from artgen.config import Settings
from artgen.jobs.schemas import Job, JobCreate
from artgen.jobs.service import JobService, ShuttingDown
from artgen.jobs.source_video import InvalidVideo, VideoUpload
from artgen.jobs.submission import ActiveLimit, IdempotencyConflict, QueueFull
from artgen.jobs.validation import InvalidJob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

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


def _shutting_down() -> ApiError:
    return ApiError(
        503,
        "shutting_down",
        "the server is shutting down and accepts no new jobs; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def submit_job(
    service: JobService,
    request: Request,
    owner: str | None,
    job_request: JobCreate,
    *,
    init_image: bytes | None = None,
    image_prompts: list[bytes] | None = None,
    idempotency_key: str | None = None,
    source_video: VideoUpload | None = None,
) -> tuple[Job, bool]:
    """Hand the job to the service (which validates it and applies every limit atomically).

    Its refusals become HTTP errors; an idempotent replay counts against no limit.
    """
    caller = caller_id(request, owner)
    try:
        job, created = service.submit(
            job_request,
            init_image=init_image,
            image_prompts=image_prompts or (),
            owner=owner,
            idempotency_key=idempotency_key,
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
    except InvalidVideo as exc:
        status = 413 if exc.code == "video_too_large" else 422
        field = "source_video"
        raise ApiError(status, exc.code, f"{field}: {exc.message}", field=field) from exc
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
) -> tuple[JobCreate, bytes | None, list[bytes], VideoUpload | None]:
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
