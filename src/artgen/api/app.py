"""create_app(settings): the FastAPI application with its job service, worker and middleware."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from artgen.api.errors import ErrorBody, install_error_handlers
from artgen.api.metrics import install_metrics, poll_metrics_forever
from artgen.api.routes import (
    events,
    frames,
    health,
    job_files,
    jobs,
    legacy,
    models,
    prompts,
    submit,
)
from artgen.api.routes.legacy import LegacyDefaults
from artgen.api.schemas import public_json
from artgen.api.security import RateLimiter
from artgen.api.uploads import BodyLimitMiddleware, body_limit
from artgen.config import Settings, get_settings
from artgen.jobs.schemas import JobCreate
from artgen.jobs.service import JobService

logger = logging.getLogger("artgen.api")

if TYPE_CHECKING:
    from artgen.jobs.hosting import HostedWorker

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EXPOSED_HEADERS = ["Location", "Retry-After", "X-Request-ID", "X-Job-Id", "X-Iteration"]


class RequestIdMiddleware:
    """Takes a safe X-Request-ID from the client (or makes one) and returns it on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def should_start_worker(settings: Settings) -> bool:
    """Embedded worker: on for the embedded SQLite queue; with Redis only when asked explicitly."""
    if not settings.worker:
        return False
    if settings.resolved_queue_url.startswith("sqlite"):
        return True
    return "worker" in settings.model_fields_set


def _close(service: Any) -> None:
    try:
        service.close()
    except Exception:
        logger.exception("error while closing the job service")


def _stop(component: Any, what: str) -> None:
    try:
        component.stop()
    except Exception:
        logger.exception("error while stopping the %s", what)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the job service (and the embedded worker); on shutdown drain and checkpoint."""
    from artgen.jobs.hosting import start_embedded_worker, start_worker_process

    settings: Settings = app.state.settings
    service = await run_in_threadpool(JobService.from_settings, settings, public_json)
    await run_in_threadpool(service.start)
    worker: HostedWorker | None = None
    if should_start_worker(settings) and settings.worker_process:
        # Started on the event loop's thread, not a pool thread: the child's parent-death
        # signal fires when the thread that started it exits.
        worker = start_worker_process(settings)
    elif should_start_worker(settings):
        worker = await run_in_threadpool(start_embedded_worker, settings, service.queue)
    app.state.service = service
    app.state.worker = worker
    tasks = [asyncio.create_task(poll_metrics_forever(app, app.state.metrics))]
    if worker is not None:
        tasks.append(asyncio.create_task(supervise_worker(app)))
    logger.info("artgen API ready to accept jobs (embedded worker: %s)", worker is not None)
    try:
        yield
    finally:
        begin_draining(app)
        for task in tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                # Whatever became of a background task, the worker and service still stop.
                logger.exception("a background task of the server failed")
        # The worker checkpoints its running job when stopped, so a restart resumes it.
        if app.state.worker is not None:
            await run_in_threadpool(_stop, app.state.worker, "embedded worker")
        await run_in_threadpool(_close, service)
        app.state.service = None


# How often the embedded worker is looked at, and the restart delays after it died on its own.
WORKER_CHECK_S = 1.0
WORKER_RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# A worker that lived this long before dying is restarted after the first delay again.
WORKER_STABLE_S = 120.0


async def supervise_worker(app: FastAPI) -> None:
    """Restart the embedded worker (thread or child process) when it dies on its own.

    The jobs it was seen running are handed on at once (requeued from their checkpoints) instead
    of after a lease; restarts back off while it keeps dying soon after starting.
    """
    loop = asyncio.get_running_loop()
    failures, started = 0, loop.time()
    while True:
        await asyncio.sleep(WORKER_CHECK_S)
        worker = app.state.worker
        if worker is None or worker.alive or getattr(app.state, "draining", False):
            continue
        if loop.time() - started >= WORKER_STABLE_S:
            failures = 0
        delay = WORKER_RESTART_DELAYS_S[min(failures, len(WORKER_RESTART_DELAYS_S) - 1)]
        try:
            await _restart_worker(app, worker, delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The queue briefly unreachable, a failed spawn: try again on the next look.
            logger.exception("restarting the embedded worker failed")
        failures += 1
        started = loop.time()


async def _restart_worker(app: FastAPI, worker: HostedWorker, delay: float) -> None:
    from artgen.jobs.hosting import start_embedded_worker, start_worker_process

    settings: Settings = app.state.settings
    exit_code = worker.exit_code
    logger.error(
        "the embedded worker stopped on its own (exit code %s): restarting it in %g s",
        exit_code,
        delay,
    )
    service = app.state.service
    await run_in_threadpool(_stop, worker, "stopped embedded worker")  # reap, close its queue
    await run_in_threadpool(service.collector.worker_gone, worker.worker_id)
    await asyncio.sleep(delay)
    if getattr(app.state, "draining", False):
        return
    if settings.worker_process:
        # On the event loop's thread, like the first one (see the parent-death signal).
        app.state.worker = start_worker_process(settings)
        return
    starting = asyncio.ensure_future(
        run_in_threadpool(start_embedded_worker, settings, service.queue)
    )
    try:
        app.state.worker = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Shutting down meanwhile: keep the handle, so the lifespan stops this worker too.
        app.state.worker = await starting
        raise


def begin_draining(app: FastAPI) -> None:
    """Readiness 503 and new submissions 503 `shutting_down` from now on."""
    app.state.draining = True
    service = getattr(app.state, "service", None)
    if service is not None:
        service.draining = True


# Error statuses any /v1 operation can answer (auth, validation, body limit, rate, drain).
COMMON_ERRORS = {
    "401": "missing or invalid API key",
    "422": "invalid parameters; the body names the field",
    "500": "internal error (the log has the traceback and request id)",
}
POST_ERRORS = {
    "400": "malformed request body (e.g. unparsable multipart)",
    "413": "request body over the limit",
    "503": "queue full or shutting down",
}


def _custom_openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI with JobCreate (POST /v1/jobs parses JSON or multipart by hand) and our errors."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (JobCreate, ErrorBody):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                for status, description in COMMON_ERRORS.items():
                    responses.setdefault(status, {"description": description})
                if method == "post":
                    for status, description in POST_ERRORS.items():
                        responses.setdefault(status, {"description": description})
            if not path.startswith("/v1/"):
                # The probes answer their own shapes (e.g. /readyz 503 names why it is not ready).
                continue
            # Every error leaves in our shape, not FastAPI's default {"detail": ...}.
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = error_content
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service's ASGI app; `settings` default to the environment's (ARTGEN_*)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="artgen",
        version="0.1.0",
        description="CLIP-guided VQGAN art generation as background jobs.",
        lifespan=lifespan,
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.service = None
    app.state.worker = None
    app.state.draining = False
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.legacy_defaults = LegacyDefaults()

    install_error_handlers(app)
    app.state.metrics = install_metrics(app)
    routers = [
        submit.router,
        jobs.router,
        job_files.router,
        frames.router,
        events.router,
        legacy.router,
        models.router,
    ]
    routers.append(prompts.router)
    for router in (*routers, health.router):
        app.include_router(router)
    app.openapi = lambda: _custom_openapi(app)  # type: ignore[method-assign]

    # Added inner to outer: CORS wraps the body limit so even a 413 carries CORS headers.
    # A restyle's video may be larger than an image upload (ARTGEN_VIDEO_MAX_BYTES).
    largest = settings.largest_upload_bytes
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=body_limit(largest))
    if settings.cors_origins:
        wildcard = "*" in settings.cors_origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # Credentials only with explicit origins, never with "*".
            allow_credentials=not wildcard,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Content-Type",
                "X-API-Key",
                "Idempotency-Key",
                "Last-Event-ID",
                "X-Request-ID",
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(RequestIdMiddleware)

    if (WEB_DIR / "index.html").is_file():
        # Mounted last so every API route matches first; html=True serves index.html at "/".
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    return app
