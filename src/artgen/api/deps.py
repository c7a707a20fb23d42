"""Dependencies shared by the routes: settings, the job service, the caller's identity."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader

from artgen.api.errors import ApiError
from artgen.api.security import API_KEY_HEADER, authenticate
from artgen.config import Settings
from artgen.jobs.schemas import Job
from artgen.jobs.service import JobService

# auto_error=False: a missing key is our own 401 JSON, not FastAPI's 403.
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in the thread pool, a hop per dependency per request.


async def app_settings(request: Request) -> Settings:
    """The settings the app was created with (create_app(settings) puts them on app.state)."""
    return request.app.state.settings


# Read from app.state, not through dependency_overrides: FastAPI rebuilds an overridden
# dependency's signature on every request (a fifth of a poll's CPU time).
SettingsDep = Annotated[Settings, Depends(app_settings)]


async def get_service(request: Request) -> JobService:
    """The app's JobService; 503 while it is not running (startup or shutdown)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ApiError(503, "unavailable", "the job service is not running yet")
    return service


ServiceDep = Annotated[JobService, Depends(get_service)]


async def get_owner(
    settings: SettingsDep, api_key: Annotated[str | None, Depends(_api_key_header)]
) -> str | None:
    """The caller's owner id (a hash of its key), None when keys are off; 401 otherwise."""
    return authenticate(api_key, settings.api_keys)


OwnerDep = Annotated[str | None, Depends(get_owner)]


async def job_id_path(
    job_id: Annotated[
        str, Path(description="the job's id (a UUID)", json_schema_extra={"format": "uuid"})
    ],
) -> str:
    """The job id in its canonical form; an id that is no UUID is unknown like any other (404)."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        # Not echoed: whatever was sent, no job has that id.
        raise ApiError(404, "not_found", "no job with this id (job ids are UUIDs)") from None


JobIdPath = Annotated[str, Depends(job_id_path)]


def caller_id(request: Request, owner: str | None) -> str:
    """Who a rate limit counts against: the key's owner id, else the client address."""
    if owner is not None:
        return f"key:{owner}"
    client = request.client
    return f"addr:{client.host if client else 'unknown'}"


def job_or_404(service: JobService, job_id: str | uuid.UUID, owner: str | None) -> Job:
    """The job, or 404 (also for another key's job, so ids of others' jobs are not revealed)."""
    job = service.get(str(job_id), owner=owner)
    if job is None:
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    return job
