"""Jobs: records, the queue, workers and the service the API calls."""

from artgen.jobs.schemas import (
    Job,
    JobCreate,
    JobError,
    JobEvent,
    JobStatus,
    ServiceHealth,
    WorkerInfo,
)

__all__ = [
    "Job",
    "JobCreate",
    "JobError",
    "JobEvent",
    "JobStatus",
    "ServiceHealth",
    "WorkerInfo",
]
