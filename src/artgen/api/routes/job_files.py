"""A job's files: the latest preview, the final image and the video."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from artgen.api.deps import JobIdPath, OwnerDep, ServiceDep, job_or_404
from artgen.api.errors import ApiError
from artgen.api.files import deleted, file_response, image_response, open_stored_file
from artgen.api.routes.jobs import ERROR_RESPONSES
from artgen.jobs.schemas import Job, JobStatus
from artgen.jobs.service import JobService

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ImageFormat = Annotated[Literal["png", "jpeg"], Query(alias="format")]


@router.get(
    "/{job_id}/preview",
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}},
        409: {"description": "the job ended without a preview (`job_ended`)"},
        **ERROR_RESPONSES,
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
                raise deleted(job_id)
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
        **ERROR_RESPONSES,
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


def _finished_file(
    service: JobService, job: Job, lookup: Callable[[str], Path | None], what: str
) -> Path:
    """The path of a succeeded job's file; 409 before it succeeded, 404 once deleted."""
    path = lookup(job.id) if job.status == JobStatus.succeeded else None
    if path is not None:
        return path
    # Read again: a DELETE may have removed the record since it was read.
    current = service.get(job.id)
    if current is None:
        raise deleted(job.id)
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
        **ERROR_RESPONSES,
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


def _animation_video_missing(service: JobService, job: Job) -> ApiError:
    """404 once deleted; 409 while running, or when it ended without frames."""
    current = service.get(job.id)
    if current is None:
        return deleted(job.id)
    if current.status.terminal:
        what = f"ended as {current.status.value} without a video (no frames were made)"
        return ApiError(409, "not_finished", f"job {job.id} {what}")
    return ApiError(
        409,
        "not_finished",
        f"job {job.id} is {current.status.value} (frame {current.frames_done} of "
        f"{current.frames}); the video is ready when it succeeds or is canceled",
    )
