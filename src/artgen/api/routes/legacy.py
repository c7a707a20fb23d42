"""The seed's four endpoints, same shapes, running on the job system (deprecated: use /v1/jobs)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from artgen.api.deps import OwnerDep, ServiceDep, SettingsDep, job_or_404
from artgen.api.errors import ApiError, validation_error
from artgen.api.routes.submit import submit_job
from artgen.api.uploads import read_image_upload
from artgen.config import Settings
from artgen.jobs.schemas import Job, JobCreate, JobStatus
from artgen.jobs.service import JobService
from artgen.media import png_to_jpeg

router = APIRouter(prefix="/v1", tags=["seed (deprecated)"])

POLL_SECONDS = 0.25
# Extra wait on top of the job timeout before the request gives up on the job.
WAIT_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class LegacyDefaults:
    """The seed's fixed generation settings (its notebook used 100 iterations)."""

    iterations: int = 100
    cutn: int | None = None  # None: the JobCreate default (the seed's 64)
    preview_every: int = 5


JOB_ID_HELP = "a job id from X-Job-Id; default: your current (or last) generation"
_DEPRECATED = "Deprecated: kept for clients of the original API; use /v1/jobs."
_JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}, "description": "the image as JPEG"}
}
_GENERATE: dict[int | str, dict[str, Any]] = {
    **_JPEG,
    404: {"description": "the job named by job_id does not exist"},
    409: {"description": "the job was canceled"},
    429: {"description": "rate or active-job limit of this key"},
    500: {"description": "the job failed (the code says why)"},
    504: {"description": "the job did not finish in time; follow it at /v1/jobs/{id}"},
    507: {"description": "the server's disk is full (`disk_full`); nothing was stored"},
}
_GENERATE_FROM_IMAGE: dict[int | str, dict[str, Any]] = {
    **_GENERATE,
    415: {"description": "the image is not PNG, JPEG or WebP"},
}
_PROGRESS_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "no generation yet, or no intermediate image yet"}
}


def _legacy_request(app_state: Any, prompt: str, width: int, height: int) -> JobCreate:
    defaults: LegacyDefaults = getattr(app_state, "legacy_defaults", LegacyDefaults())
    fields: dict[str, Any] = {
        "prompts": prompt,
        "width": width,
        "height": height,
        "iterations": defaults.iterations,
        "preview_every": defaults.preview_every,
    }
    if defaults.cutn is not None:
        fields["cutn"] = defaults.cutn
    try:
        return JobCreate.model_validate(fields)
    except ValidationError as exc:
        # The seed's parameters are query parameters: name them as such.
        errors = [
            {**error, "loc": ("prompt",) if error.get("loc") == ("prompts",) else error["loc"]}
            for error in exc.errors()
        ]
        raise validation_error(errors) from exc


async def _wait_for_image(
    request: Request, service: JobService, job: Job, timeout: float
) -> Response:
    """Poll the service (without blocking the loop) until the job ends; its image as JPEG."""
    deadline = time.monotonic() + timeout
    headers = {"X-Job-Id": job.id}
    while True:
        current = await run_in_threadpool(service.get, job.id)
        if current is None:
            raise ApiError(404, "not_found", f"job {job.id} was deleted while running")
        if current.status == JobStatus.succeeded:
            path = await run_in_threadpool(service.image_file, job.id)
            if path is None:
                raise ApiError(
                    500,
                    "internal_error",
                    f"job {job.id} succeeded but has no image",
                    headers=headers,
                )
            data = await run_in_threadpool(png_to_jpeg, path)
            return Response(data, media_type="image/jpeg", headers=headers)
        elif current.status == JobStatus.failed:
            error = current.error
            raise ApiError(
                500,
                error.code if error else "internal_error",
                f"job {job.id} failed: {error.message if error else 'unknown error'}",
                headers=headers,
            )
        elif current.status == JobStatus.canceled:
            raise ApiError(409, "canceled", f"job {job.id} was canceled", headers=headers)
        if getattr(request.app.state, "draining", False):
            raise ApiError(
                503,
                "shutting_down",
                f"the server is shutting down; job {job.id} resumes after the restart",
                headers={**headers, "Retry-After": "5"},
            )
        if await request.is_disconnected():
            # The job carries on; the client can find it through /v1/jobs or the progress bar.
            raise ApiError(499, "client_closed", f"client went away; job {job.id} continues")
        if time.monotonic() > deadline:
            raise ApiError(
                504,
                "timeout",
                f"job {job.id} did not finish in {timeout:.0f} s; follow it at /v1/jobs/{job.id}",
                headers=headers,
            )
        await asyncio.sleep(POLL_SECONDS)


async def _generate(
    request: Request,
    service: JobService,
    settings: Settings,
    owner: str | None,
    prompt: str | None,
    width: int | None,
    height: int | None,
    job_id: uuid.UUID | None,
    init_image: bytes | None = None,
) -> Response:
    if job_id is not None:
        job = await run_in_threadpool(job_or_404, service, job_id, owner)
    else:
        missing = [
            name
            for name, value in (("prompt", prompt), ("width", width), ("height", height))
            if value is None
        ]
        if missing:
            raise ApiError(
                422,
                "validation_error",
                f"{missing[0]}: field required (query parameter)",
                field=missing[0],
                details=[{"field": name, "message": "field required"} for name in missing],
            )
        assert prompt is not None and width is not None and height is not None
        if not prompt.strip():
            raise ApiError(422, "validation_error", "prompt: must not be empty", field="prompt")
        job_request = _legacy_request(request.app.state, prompt, width, height)
        job, _ = await run_in_threadpool(
            submit_job, service, request, owner, job_request, init_image=init_image
        )
    return await _wait_for_image(
        request, service, job, settings.job_timeout_seconds + WAIT_MARGIN_SECONDS
    )


@router.post(
    "/generate_text2img",
    deprecated=True,
    response_class=Response,
    responses=_GENERATE,
    description=_DEPRECATED,
)
async def generate_text2img(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    owner: OwnerDep,
    prompt: Annotated[str | None, Query(description="'text:weight:stop | ...'")] = None,
    width: Annotated[int | None, Query()] = None,
    height: Annotated[int | None, Query()] = None,
    job_id: Annotated[uuid.UUID | None, Query(description=JOB_ID_HELP)] = None,
) -> Response:
    """Generate (100 iterations) and answer the final image as JPEG, with header X-Job-Id."""
    return await _generate(request, service, settings, owner, prompt, width, height, job_id)


@router.post(
    "/generate_textimg2img",
    deprecated=True,
    response_class=Response,
    responses=_GENERATE_FROM_IMAGE,
    description=_DEPRECATED,
)
async def generate_textimg2img(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    owner: OwnerDep,
    image: Annotated[UploadFile, File(description="the starting image (PNG, JPEG, WebP)")],
    prompt: Annotated[str | None, Query(description="'text:weight:stop | ...'")] = None,
    width: Annotated[int | None, Query()] = None,
    height: Annotated[int | None, Query()] = None,
    job_id: Annotated[uuid.UUID | None, Query(description=JOB_ID_HELP)] = None,
) -> Response:
    """Like generate_text2img, starting from the uploaded `image`."""
    init_image = None
    if job_id is None:
        init_image = await read_image_upload(
            image, "image", settings.max_upload_bytes, settings.max_image_pixels
        )
    return await _generate(
        request, service, settings, owner, prompt, width, height, job_id, init_image
    )


def _current_job(service: JobService, owner: str | None, job_id: uuid.UUID | None) -> Job:
    """The named job, else the caller's current (or last) one; 404 before any generation."""
    if job_id is not None:
        return job_or_404(service, job_id, owner)
    # The current generation is the newest running one; else the newest job of any status.
    running, _ = service.list(owner=owner, status=JobStatus.running, limit=1, offset=0)
    newest, _ = ([], 0) if running else service.list(owner=owner, limit=1, offset=0)
    candidates = running or newest
    job = candidates[0] if candidates else None
    if job is None:
        raise ApiError(
            404,
            "not_found",
            "no generation has been started yet: call /v1/generate_text2img first",
        )
    return job


@router.post(
    "/generate_text2img_progressimg",
    deprecated=True,
    response_class=Response,
    responses={**_JPEG, **_PROGRESS_404},
    description=_DEPRECATED,
)
async def generate_text2img_progressimg(
    service: ServiceDep,
    owner: OwnerDep,
    job_id: Annotated[uuid.UUID | None, Query(description=JOB_ID_HELP)] = None,
) -> Response:
    """The latest intermediate image of the current (or last) generation, as JPEG."""

    def read() -> Response:
        job = _current_job(service, owner, job_id)
        found = service.preview_file(job.id)
        if found is None:
            raise ApiError(
                404,
                "not_found",
                f"job {job.id} has no intermediate image yet; retry in a moment",
                headers={"X-Job-Id": job.id, "Retry-After": "1"},
            )
        path, iteration = found
        return Response(
            png_to_jpeg(path),
            media_type="image/jpeg",
            headers={"X-Job-Id": job.id, "X-Iteration": str(iteration)},
        )

    return await run_in_threadpool(read)


@router.post(
    "/generate_text2img_progressbar",
    deprecated=True,
    response_model=str,
    responses=_PROGRESS_404,
    description=_DEPRECATED,
)
async def generate_text2img_progressbar(
    response: Response,
    service: ServiceDep,
    owner: OwnerDep,
    job_id: Annotated[uuid.UUID | None, Query(description=JOB_ID_HELP)] = None,
) -> str:
    """Iterations done by the current (or last) generation, as a JSON string such as "42"."""
    job = await run_in_threadpool(_current_job, service, owner, job_id)
    response.headers["X-Job-Id"] = job.id
    return str(job.iteration)
