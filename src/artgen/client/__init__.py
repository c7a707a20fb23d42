"""artgen.client: submit and follow jobs on an artgen server (`artgen serve`) from Python.

    from artgen.client import Client
    with Client("http://gpu-box:8000", api_key="...") as client:
        picture = client.generate("a yellow star on a purple background", width=64, height=64)

Typed with the server's own schemas (JobCreate, JobPublic, JobsPublic); imports no torch.
"""

from artgen.api.schemas import JobPublic as Job
from artgen.api.schemas import JobsPublic
from artgen.client.aio import AsyncClient
from artgen.client.errors import (
    ApiError,
    ArtgenConnectionError,
    ArtgenError,
    BadRequest,
    Conflict,
    FieldError,
    JobFailed,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from artgen.client.protocol import RetryPolicy
from artgen.client.sse import ServerEvent
from artgen.client.sync import Client
from artgen.jobs.schemas import JobCreate, JobStatus

__all__ = [
    "ApiError",
    "ArtgenConnectionError",
    "ArtgenError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "FieldError",
    "Job",
    "JobCreate",
    "JobFailed",
    "JobStatus",
    "JobsPublic",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerEvent",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
]
