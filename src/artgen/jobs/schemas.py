"""Job schemas: the request (JobCreate) and the stored record (Job); its public JSON is api/."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from artgen.engine.params import GenerationParams
from artgen.jobs.animation_fields import (
    ANIMATION_EXAMPLE,
    ANIMATION_FIELDS,
    RESTYLE_EXAMPLE,
    AnimationFields,
    JobKind,
)
from artgen.jobs.webhook_fields import WEBHOOK_FIELDS, WebhookFields

# Fields of JobCreate that are not GenerationParams (the worker strips them before generating).
JOB_ONLY_FIELDS = (
    "model", "clip_models", "video", "preview_every", "kind", *ANIMATION_FIELDS, *WEBHOOK_FIELDS
)  # fmt: skip
# Each critic is a whole CLIP model in memory and a forward pass per step.
MAX_CLIP_MODELS = 4
_PROMPT_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "'text:weight:stop | other:-0.5', or a list of such prompts; '' only with "
    "image or noise prompts. `prompts` is accepted as an alias.",
    "examples": ["a castle in the clouds:1 | fog:-0.5", ["a castle in the clouds", "fog:-0.5"]],
}
JOB_CREATE_EXAMPLE: dict[str, Any] = {
    "prompt": "a castle in the clouds:1 | fog:-0.5",
    "width": 128,
    "height": 128,
    "iterations": 50,
    "seed": 7,
}


class _BothPromptNames:
    """Stands in for `prompt` when a request gave both names, so the field's error names it."""


def utcnow() -> datetime:
    """Timezone-aware now in UTC, second resolution is not enforced."""
    return datetime.now(UTC)


class JobStatus(StrEnum):
    """Lifecycle of a job; succeeded, failed and canceled are terminal."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        """True once the job will never change again."""
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


ACTIVE_STATUSES = (JobStatus.queued, JobStatus.running)


class JobCreate(GenerationParams, AnimationFields, WebhookFields):
    """What a client asks for: the generation parameters plus models, video and previews."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [JOB_CREATE_EXAMPLE, ANIMATION_EXAMPLE, RESTYLE_EXAMPLE]},
    )

    # `prompt` like the seed's endpoints and most image APIs; `prompts` (the engine's name) too.
    prompts: Annotated[str, WithJsonSchema(_PROMPT_SCHEMA)] = Field(
        validation_alias=AliasChoices("prompt", "prompts")
    )
    model: str | None = Field(None, description="VQGAN name; None uses the server's default")
    clip_models: list[str] | None = Field(
        None,
        description=f"CLIP critic names (at most {MAX_CLIP_MODELS} distinct, duplicates dropped); "
        "None uses the server's default",
    )
    video: bool = Field(False, description="also render an MP4 timelapse of the previews")
    preview_every: int = Field(5, ge=1, le=100_000, description="iterations between previews")

    # The name the client gave the prompts under, so the server's own errors use it too.
    _prompt_name: str = PrivateAttr("prompts")

    @model_validator(mode="wrap")
    @classmethod
    def _one_prompt_name(cls, data: Any, handler: ModelWrapValidatorHandler[JobCreate]) -> Any:
        used_prompt = isinstance(data, dict) and "prompt" in data
        if used_prompt and "prompts" in data:
            rest = {key: value for key, value in data.items() if key != "prompts"}
            data = {**rest, "prompt": _BothPromptNames()}
        request = handler(data)
        if used_prompt:
            request._prompt_name = "prompt"
        return request

    @property
    def prompt_field(self) -> str:
        """`prompt` or `prompts`: the name this request used (error messages name it)."""
        return self._prompt_name

    @field_validator("prompts", mode="before")
    @classmethod
    def _join_prompt_list(cls, value: Any) -> Any:
        if isinstance(value, _BothPromptNames):
            raise ValueError("give `prompt` or its alias `prompts`, not both")
        # A list of prompts is the same as the "a | b" syntax.
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise ValueError("a list of prompts must contain only strings")
            return " | ".join(item.strip() for item in value)
        return value

    @field_validator("clip_models")
    @classmethod
    def _check_clip_models(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("clip_models: give at least one name, or leave it out")
        # The same critic twice would be loaded twice and only double its weight.
        distinct = list(dict.fromkeys(value))
        if len(distinct) > MAX_CLIP_MODELS:
            raise ValueError(f"at most {MAX_CLIP_MODELS} different CLIP models per job")
        return distinct

    def generation_params(self) -> GenerationParams:
        """The engine's part of the request."""
        return GenerationParams(**self.model_dump(exclude=set(JOB_ONLY_FIELDS)))

    def total_iterations(self) -> int:
        """Iterations of the whole job: the picture's, or every frame's of an animation."""
        if not self.kind.animated:
            return self.iterations
        return self.animation_params().total_iterations(self.iterations)

    def stored_params(self, exclude: set[str] | None = None) -> dict[str, Any]:
        """The params a job record keeps: a picture's as before (no animation fields), an
        animation's with every AnimationParams field it runs with; `exclude`d fields left out."""
        left_out = {"kind", *ANIMATION_FIELDS, *(exclude or set())}
        params = self.model_dump(mode="json", exclude=left_out)
        if self.kind.animated:
            params["kind"] = self.kind.value
            params.update(self.animation_params().model_dump(mode="json"))
        return params


class JobError(BaseModel):
    """Why a job failed: a stable code and a human message."""

    code: str
    message: str


class JobEvent(BaseModel):
    """One entry of a job's event stream (SSE): ids increase."""

    id: int
    type: str
    data: dict[str, Any]


class Job(BaseModel):
    """The stored record of a job."""

    id: str
    status: JobStatus = JobStatus.queued
    params: dict[str, Any]
    owner: str | None = None
    # Incremented at every requeue; reports from another attempt are ignored (fencing).
    attempt: int = 1
    seed: int | None = None
    iteration: int = 0
    iterations: int
    loss: float | None = None
    eta_seconds: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # When the current attempt entered the queue: orders the queue for queue_position.
    enqueued_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: JobError | None = None
    cancel_requested: bool = False
    idempotency_key_hash: str | None = None
    worker_id: str | None = None
    # Iteration the current attempt started from (above 0 when it resumed from a checkpoint).
    start_iteration: int | None = None
    # Names of files in the job's directory; set only after the file is fully on disk.
    init_image_file: str | None = None
    image_prompt_files: list[str] = Field(default_factory=list)
    preview_file: str | None = None
    preview_iteration: int | None = None
    image_file: str | None = None
    video_file: str | None = None
    checkpoint_file: str | None = None
    checkpoint_iteration: int | None = None
    # Where and when the job's JSON is POSTed (artgen.jobs.webhooks); kept out of `params`.
    webhook: str | None = None
    webhook_events: list[str] = Field(default_factory=list)
    # Animations and restyles: frames in all, frames written to disk (frame files 0..done-1),
    # the frame being made, and the frames finished at the checkpoint (where a new attempt starts).
    kind: JobKind = JobKind.picture
    frames: int | None = None
    frames_done: int = 0
    frame: int | None = None
    # The iteration within the frame being made, of how many that frame gets.
    frame_iteration: int | None = None
    frame_iterations: int | None = None
    checkpoint_frame: int | None = None
    # The frame the current attempt started at (above 0 when it resumed).
    start_frame: int | None = None
    # Restyle: the uploaded source video, and its frame rate (the MP4 keeps it).
    source_video_file: str | None = None
    source_fps: float | None = None

    @property
    def progress(self) -> float:
        """Fraction of iterations done, 0..1."""
        if self.status == JobStatus.succeeded:
            return 1.0
        return min(1.0, self.iteration / self.iterations) if self.iterations else 0.0

    def file_names(self) -> list[str]:
        """Every file the record points at."""
        names = [self.init_image_file, *self.image_prompt_files, self.preview_file]
        names += [self.image_file, self.video_file, self.checkpoint_file, self.source_video_file]
        return [name for name in names if name]


class WorkerInfo(BaseModel):
    """A worker as it last registered itself in the queue storage."""

    id: str
    device: str
    busy: bool = False
    job_id: str | None = None  # the first of job_ids
    # Every job it is stepping (several when same-size jobs run batched).
    job_ids: list[str] = Field(default_factory=list)
    # Jobs it steps together at most.
    batch_jobs: int = 1
    model: str | None = None
    clip_models: list[str] = Field(default_factory=list)
    # True once the default models are loaded and jobs are being taken.
    ready: bool = False
    model_error: str | None = None
    heartbeat: float = 0.0
    stopped: bool = False
    alive: bool = False


class ServiceHealth(BaseModel):
    """What /readyz and /metrics need: queue reachability, workers, queue depth."""

    queue_ok: bool
    queue_error: str | None = None
    workers: list[WorkerInfo] = Field(default_factory=list)
    queued: int = 0
    running: int = 0
    draining: bool = False

    @property
    def workers_alive(self) -> int:
        """Workers that heartbeat within the lease."""
        return sum(1 for worker in self.workers if worker.alive)

    @property
    def workers_busy(self) -> int:
        """Alive workers running a job."""
        return sum(1 for worker in self.workers if worker.alive and worker.busy)

    @property
    def ready(self) -> bool:
        """Queue reachable and at least one alive worker with its models loaded."""
        alive_ready = any(w.alive and w.ready and not w.model_error for w in self.workers)
        return self.queue_ok and alive_ready and not self.draining
