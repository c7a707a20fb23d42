"""Fixtures for the job tests: settings on a temp data dir, a cached tiny-model loader, waiting."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from jobtools import REDIS_URL, redis_available

from artgen.api.schemas import public_json
from artgen.config import Settings
from artgen.jobs.hosting import EmbeddedWorker, start_embedded_worker
from artgen.jobs.queue import JobQueue
from artgen.jobs.service import JobService
from support import wait_for


@pytest.fixture(scope="session")
def models_loader(
    tiny_models: Any, models_home: Path
) -> Callable[[str, list[str], torch.device], Any]:
    """The real load_models, with the shared tiny models reused so worker starts are instant."""
    from artgen.models.catalog import Catalog
    from artgen.models.loading import load_models

    cache: dict[tuple[str, tuple[str, ...]], Any] = {("tiny", ("tiny",)): tiny_models}

    def load(vqgan: str, clips: list[str], device: torch.device) -> Any:
        key = (vqgan, tuple(clips))
        if key not in cache:
            cache[key] = load_models(vqgan, clips, device, Catalog(models_home))
        return cache[key]

    return load


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Tiny models on CPU and fast checkpoints; the embedded SQLite queue unless parametrized
    with "redis" (a unique key namespace on the local redis-server, flushed afterwards)."""
    backend = getattr(request, "param", "sqlite")
    queue_url = None
    if backend == "redis":
        if not redis_available():
            pytest.skip(f"no redis-server answering at {REDIS_URL}")
        queue_url = f"{REDIS_URL}?name=artgen_test_{uuid.uuid4().hex}"
    settings = Settings(
        queue_url=queue_url,
        data_dir=tmp_path / "data",
        home=tmp_path / "home",
        model="tiny",
        device="cpu",
        checkpoint_every=4,
        lease_seconds=5.0,
        max_attempts=3,
    )
    yield settings
    if backend == "redis":
        queue = JobQueue.from_url(queue_url)
        queue.flush()
        queue.close()


@pytest.fixture
def service(settings: Settings) -> Iterator[JobService]:
    """A started JobService (collector running), closed after the test."""
    service = JobService.from_settings(settings, public_json)
    service.start()
    yield service
    service.close()


@pytest.fixture
def start_worker(
    settings: Settings, service: JobService, models_loader: Callable[..., Any]
) -> Iterator[Callable[[], EmbeddedWorker]]:
    """Start embedded workers on the service's queue; all are stopped after the test."""
    started: list[EmbeddedWorker] = []

    def start() -> EmbeddedWorker:
        handle = start_embedded_worker(settings, service.queue, models_loader)
        started.append(handle)
        wait_for(lambda: handle.worker.info.ready or handle.worker.info.model_error, 60)
        return handle

    yield start
    for handle in started:
        handle.stop()


def queue_for(settings: Settings) -> JobQueue:
    """A JobQueue on the settings' queue URL."""
    return JobQueue.from_url(settings.resolved_queue_url)
