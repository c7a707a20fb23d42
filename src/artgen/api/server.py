"""serve(settings): run the API (and its embedded worker) under uvicorn with graceful drain."""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

from artgen.api.app import begin_draining, create_app
from artgen.config import Settings

logger = logging.getLogger("artgen.api")

# Long waits (SSE, the seed's blocking generate) see the drain flag within a second;
# this bounds how long a stuck connection can hold up the exit.
GRACEFUL_SHUTDOWN_SECONDS = 10
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DrainingServer(uvicorn.Server):
    """A uvicorn server that marks the app as draining the moment SIGTERM/SIGINT arrives."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.artgen_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            logger.info("signal %s: draining (readiness 503, no new jobs)", sig)
            begin_draining(self.artgen_app)
        super().handle_exit(sig, frame)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; the lifespan then stops the worker (checkpointing its job)."""
    # Our own loggers (request ids, tracebacks, worker) next to uvicorn's.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # The seed's endpoints hold a request open for a whole generation.
        timeout_keep_alive=30,
    )
    DrainingServer(config, app).run()
