"""Liveness and readiness probes (open even when API keys are on; details only with a key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from artgen.api.errors import ApiError
from artgen.api.security import API_KEY_HEADER, authenticate

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    """The /readyz answer: ready or why not, with the queue and worker figures."""

    model_config = ConfigDict(extra="allow")

    status: str
    reason: str | None = None


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


def readiness(app_state: Any, detailed: bool = True) -> tuple[bool, dict[str, Any]]:
    """(ready, body): ready when not draining, the queue answers and a worker has its models.

    Without `detailed` the body has the status, a short reason and counts only: no worker ids,
    job ids, devices or error texts.
    """
    if getattr(app_state, "draining", False):
        return False, {"status": "draining", "reason": "the server is shutting down"}
    service = getattr(app_state, "service", None)
    if service is None:
        return False, {"status": "starting", "reason": "the job service is not running yet"}
    try:
        health = service.health()
    except Exception as exc:  # an unreachable queue is a reason, not a crash
        reason = f"health check failed: {exc}" if detailed else "health check failed"
        return False, {"status": "unavailable", "reason": reason}
    body: dict[str, Any] = {
        "queue_ok": health.queue_ok,
        "workers_alive": health.workers_alive,
        "workers_busy": health.workers_busy,
        "queued": health.queued,
        "running": health.running,
        "workers": [
            {
                "id": worker.id,
                "device": worker.device,
                "alive": worker.alive,
                "ready": worker.ready,
                "busy": worker.busy,
                "jobs": worker.job_ids,
                "batch_jobs": worker.batch_jobs,
                "model": worker.model,
                "model_error": worker.model_error,
            }
            for worker in health.workers
        ],
    }
    if not detailed:
        del body["workers"]
    embedded = getattr(app_state, "worker", None)
    embedded_ready = embedded is None or (embedded.alive and embedded.ready(health))
    if health.ready and embedded_ready:
        return True, {"status": "ready", **body}
    if health.ready:
        # After a SIGKILL the dead process's worker registration looks fresh for a lease:
        # this process is ready only once its own embedded worker has loaded its models.
        reason = (
            "the embedded worker stopped"
            if embedded is not None and not embedded.alive
            else "the embedded worker is still loading its models"
        )
        return False, {"status": "not_ready", "reason": reason, **body}
    if not health.queue_ok:
        reason = "queue unreachable"
        if detailed:
            reason += f": {health.queue_error or 'no answer'}"
    elif health.draining:
        reason = "the server is shutting down"
    elif not health.workers_alive:
        reason = "no worker is alive (is a worker running for this queue?)"
    elif any(worker.model_error for worker in health.workers if worker.alive):
        errors = [worker.model_error for worker in health.workers if worker.model_error]
        reason = f"models failed to load: {errors[0]}" if detailed else "models failed to load"
    else:
        reason = "models are still loading"
    return False, {"status": "not_ready", "reason": reason, **body}


@router.get(
    "/readyz",
    summary="Readiness: models loaded and a worker alive",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready; the body says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when jobs can run now, else 503 with the reason; workers and jobs only with a key."""
    detailed = _has_valid_key(request)
    ready, body = await run_in_threadpool(readiness, request.app.state, detailed)
    return JSONResponse(body, status_code=200 if ready else 503)


def _has_valid_key(request: Request) -> bool:
    """True when API keys are off, or the request carries a valid one."""
    try:
        authenticate(request.headers.get(API_KEY_HEADER), request.app.state.settings.api_keys)
    except ApiError:
        return False
    return True
