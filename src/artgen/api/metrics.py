"""Prometheus metrics: HTTP metrics from the instrumentator plus the job system's own figures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.concurrency import run_in_threadpool

from artgen.jobs.schemas import Job, JobStatus
from artgen.jobs.service import JobService

logger = logging.getLogger("artgen.api")

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
TERMINAL = (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)
WEBHOOK_OUTCOMES = ("delivered", "retried", "failed", "refused")
# How many finished job ids to remember so each is counted once.
SEEN_CAPACITY = 10_000


class _ServiceCollector(Collector):
    """Queue depth, running jobs and workers, read from the service at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        service = getattr(self.app.state, "service", None)
        if service is None:
            return
        deliverer = getattr(service, "webhooks", None)
        if deliverer is not None:
            deliveries = CounterMetricFamily(
                "artgen_webhook_deliveries",
                "Webhook attempts by outcome (retried: failed, tried later; failed: gave up).",
                labels=["outcome"],
            )
            for outcome in WEBHOOK_OUTCOMES:
                deliveries.add_metric([outcome], deliverer.counts[outcome])
            yield deliveries
        try:
            health = service.health()
        except Exception:  # a scrape must not fail because the store is busy
            logger.warning("metrics: could not read the job service", exc_info=True)
            return
        queued, running = health.queued, health.running
        yield GaugeMetricFamily("artgen_queue_depth", "Jobs waiting in the queue.", value=queued)
        yield GaugeMetricFamily("artgen_jobs_running", "Jobs running now.", value=running)
        yield GaugeMetricFamily(
            "artgen_workers_alive",
            "Workers with a fresh heartbeat.",
            value=health.workers_alive,
        )
        yield GaugeMetricFamily(
            "artgen_workers_busy",
            "Workers running a job.",
            value=health.workers_busy,
        )


class JobMetrics:
    """Counters and histograms fed by polling the service for jobs that finished."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "artgen_job_duration_seconds",
            "Run time of finished jobs, from start to finish.",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.finished = Counter(
            "artgen_jobs_finished",
            "Jobs that reached a terminal status.",
            ["status"],
            registry=registry,
        )
        self.failures = Counter(
            "artgen_job_failures",
            "Failed jobs by reason (error code).",
            ["reason"],
            registry=registry,
        )
        self.iterations_per_second = Gauge(
            "artgen_iterations_per_second",
            "Iterations per second summed over running jobs.",
            registry=registry,
        )
        self.submitted = Counter(
            "artgen_jobs_submitted", "Jobs accepted by the API.", registry=registry
        )
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._primed = False
        self._last_progress: dict[str, tuple[int, float]] = {}

    def _remember(self, job_id: str) -> bool:
        """True the first time a finished job id is seen."""
        if job_id in self._seen:
            return False
        self._seen.add(job_id)
        self._seen_order.append(job_id)
        if len(self._seen_order) > SEEN_CAPACITY:
            self._seen.discard(self._seen_order.popleft())
        return True

    def poll(self, service: JobService, now: float | None = None) -> None:
        """Count newly finished jobs and refresh the iteration rate."""
        now = time.monotonic() if now is None else now
        for status in TERMINAL:
            jobs, _ = service.list(status=status, limit=50, offset=0)
            for job in jobs:
                if not self._remember(str(job.id)) or not self._primed:
                    continue
                self._observe_finished(job, status.value)
        self._primed = True

        rate = 0.0
        running, _ = service.list(status=JobStatus.running, limit=100, offset=0)
        current: dict[str, tuple[int, float]] = {}
        for job in running:
            iteration = int(getattr(job, "iteration", 0) or 0)
            previous = self._last_progress.get(str(job.id))
            current[str(job.id)] = (iteration, now)
            if previous is not None and now > previous[1] and iteration >= previous[0]:
                rate += (iteration - previous[0]) / (now - previous[1])
        self._last_progress = current
        self.iterations_per_second.set(rate)

    def _observe_finished(self, job: Job, status: str) -> None:
        self.finished.labels(status=status).inc()
        started = getattr(job, "started_at", None)
        finished = getattr(job, "finished_at", None)
        if isinstance(started, datetime) and isinstance(finished, datetime):
            seconds = max(0.0, (finished - started).total_seconds())
            self.duration.labels(status=status).observe(seconds)
        if status == "failed":
            error = getattr(job, "error", None)
            reason = getattr(error, "code", None) or "unknown"
            self.failures.labels(reason=str(reason)).inc()


def install_metrics(app: FastAPI) -> JobMetrics:
    """Expose /metrics with a registry of this app's own (create_app may run many times)."""
    registry = CollectorRegistry()
    Instrumentator(
        registry=registry,
        excluded_handlers=["/metrics", "/healthz", "/readyz"],
        should_exclude_streaming_duration=True,
    ).instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)
    registry.register(_ServiceCollector(app))
    return JobMetrics(registry)


async def poll_metrics_forever(app: FastAPI, metrics: JobMetrics, interval: float = 1.0) -> None:
    """Background task of the lifespan: feed JobMetrics until cancelled."""
    while True:
        service = getattr(app.state, "service", None)
        if service is not None:
            try:
                await run_in_threadpool(metrics.poll, service)
            except Exception:
                logger.warning("metrics: poll failed", exc_info=True)
        await asyncio.sleep(interval)
