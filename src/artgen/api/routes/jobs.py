"""The job resource: list, read, cancel, delete (submitting: submit.py; files: job_files.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from artgen.api.deps import JobIdPath, OwnerDep, ServiceDep, job_or_404
from artgen.api.errors import ApiError
from artgen.api.schemas import JobPublic, JobsPublic
from artgen.jobs.schemas import Job, JobStatus
from artgen.jobs.service import JobService

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE = 100

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such job (or another key's job)"},
    422: {"description": "invalid id or parameters"},
}


def to_public(service: JobService, job: Job) -> JobPublic:
    """The public view of a job, with its queue position when queued."""
    position = service.queue_position(job) if job.status == JobStatus.queued else None
    return JobPublic.from_job(job, queue_position=position)


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


@router.get("/{job_id}", response_model=JobPublic, responses=ERROR_RESPONSES)
async def get_job(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> JobPublic:
    """One job: status, progress, ETA, params, urls."""

    def read() -> JobPublic:
        return to_public(service, job_or_404(service, job_id, owner))

    return await run_in_threadpool(read)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=ERROR_RESPONSES)
async def cancel_job(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> JobPublic:
    """Cancel (idempotent): a queued job never starts, a running one stops within an iteration."""

    def cancel() -> JobPublic:
        job = service.cancel(str(job_id), owner=owner)
        if job is None:
            raise ApiError(404, "not_found", f"no job with id {job_id}")
        return to_public(service, job)

    return await run_in_threadpool(cancel)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=ERROR_RESPONSES)
async def delete_job(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> Response:
    """Remove the job's record and files (a running job is canceled first)."""
    deleted = await run_in_threadpool(service.delete, str(job_id), owner)
    if not deleted:
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    return Response(status_code=204)
