"""An animation's or restyle's finished frames: the list of their URLs, and each frame's PNG."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from artgen.api.deps import JobIdPath, OwnerDep, ServiceDep, job_or_404
from artgen.api.errors import ApiError
from artgen.api.files import file_response, open_stored_file
from artgen.api.schemas import frame_path

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"description": "no such job, not an animation, or no such frame (yet)"},
    422: {"description": "invalid id or frame index"},
}


@router.get("/{job_id}/frames", response_model=list[str], responses=_RESPONSES)
async def list_frames(job_id: JobIdPath, service: ServiceDep, owner: OwnerDep) -> list[str]:
    """URLs of the frames finished so far, in order (they grow while the job runs)."""

    def read() -> list[str]:
        job = job_or_404(service, job_id, owner)
        if not job.kind.animated:
            raise ApiError(404, "not_found", f"job {job_id} is a picture; it has no frames")
        return [frame_path(job.id, index) for index in range(job.frames_done)]

    return await run_in_threadpool(read)


@router.get(
    "/{job_id}/frames/{index}",
    responses={200: {"content": {"image/png": {}}}, **_RESPONSES},
    response_class=Response,
)
async def get_frame(
    job_id: JobIdPath,
    index: Annotated[int, Path(ge=0, le=100_000, description="0-based frame index")],
    service: ServiceDep,
    owner: OwnerDep,
) -> Response:
    """One finished frame as PNG; 404 until it is made."""

    def read() -> Response:
        job = job_or_404(service, job_id, owner)
        path = service.frame_file(job.id, index)
        if path is None:
            if not job.kind.animated:
                raise ApiError(404, "not_found", f"job {job_id} is a picture; it has no frames")
            made = f"frames 0 to {job.frames_done - 1}" if job.frames_done else "no frame"
            raise ApiError(404, "not_found", f"job {job_id} has {made} so far, not {index}")
        return file_response(open_stored_file(job_id, path), "image/png", {})

    return await run_in_threadpool(read)
