"""Jobs: records, the queue, workers and the service the API calls."""

from artgen.jobs.schemas import (
    Job,
    JobCreate,
    JobError,
    JobEvent,
    JobPublic,
    JobsPublic,
    JobStatus,
    ServiceHealth,
    WorkerInfo,
)

__all__ = [
    "Job",
    "JobCreate",
    "JobError",
    "JobEvent",
    "JobPublic",
    "JobStatus",
    "JobsPublic",
    "ServiceHealth",
    "WorkerInfo",
]
