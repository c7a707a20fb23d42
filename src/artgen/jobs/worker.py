"""Worker: owns the loaded models, runs job tasks from the queue and reports through it.

Jobs of the same size and models are stepped together: while a job runs, the worker takes queued
jobs it can batch with it (BatchScheduler offers them: up to `batch_jobs` jobs and `batch_pixels`
output pixels), claims them, revokes their queue messages and adds them to the running
BatchGeneration; each leaves the batch when it finishes, fails or is canceled.

The parts it holds: WorkerPresence (registration, heartbeats, lossy report writes), ModelCache
(the loaded model sets), BatchScheduler (which queued jobs may join), and one JobRun per attempt
(its Generation and its reports). None of them calls back into the worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import torch

from artgen.config import Settings
from artgen.devices import resolve_device
from artgen.engine.batch import BatchGeneration
from artgen.engine.generate import SetupStopped
from artgen.engine.stepping import step_batch
from artgen.jobs.animation_run import AnimationRun, SoloStep
from artgen.jobs.batching import BatchScheduler
from artgen.jobs.control import (
    CONTROL_INTERVAL_S,
    SetupStop,
    StopReason,
    claimable,
    stop_reasons,
)
from artgen.jobs.guard import INTERNAL_ERROR, StoppedDuringSetup, guarded
from artgen.jobs.job_run import JobRun
from artgen.jobs.model_cache import (
    ModelCache,
    ModelsLoader,
    default_models_loader,
    models_key,
)
from artgen.jobs.presence import WorkerPresence
from artgen.jobs.queue import JobQueue, QueuedTask
from artgen.jobs.reports import Outcome, Result
from artgen.jobs.schemas import JobCreate, WorkerInfo
from artgen.models.catalog import public_message

logger = logging.getLogger("artgen.jobs.worker")

Batch = BatchGeneration | SoloStep


class Worker:
    """Loads models once, then runs the tasks it dequeues, batching jobs that fit together."""

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        models_loader: ModelsLoader | None = None,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.device = resolve_device(settings.device)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        default_key = (settings.model, tuple(settings.resolved_clip_models))
        self.models = ModelCache(
            models_loader or default_models_loader(settings),
            self.device,
            default_key,
            settings.model_cache_size,
        )
        self.batching = BatchScheduler(settings, queue, self.device.type)
        self._stop = threading.Event()
        # Encodes and publishes previews off the generation loop (one thread, started on demand).
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artgen-preview")
        info = WorkerInfo(
            id=self.id,
            device=str(self.device),
            model=settings.model,
            clip_models=list(settings.resolved_clip_models),
            batch_jobs=self.batching.batch_jobs,
        )
        # Heartbeats well inside the lease so one lost write does not look like a dead worker.
        interval = max(0.1, min(2.0, settings.lease_seconds / 5))
        self.presence = WorkerPresence(queue, info, interval)

    @property
    def info(self) -> WorkerInfo:
        """What the worker's registration says."""
        return self.presence.info

    @property
    def batch_jobs(self) -> int:
        """Jobs stepped together at most."""
        return self.batching.batch_jobs

    # Lifecycle

    def start(self) -> None:
        """Register, start heartbeats and load the default models (errors are reported)."""
        self.presence.register()
        try:
            if self.device.type == "cuda" and self.device.index is not None:
                # Calls that take no device (empty_cache after an OOM) then act on ours, and no
                # worker of a multi-GPU host opens a stray context on cuda:0.
                torch.cuda.set_device(self.device)
            self.models.get(*self.models.default)
            self.info.ready = True
            logger.info("worker %s ready on %s with %s", self.id, self.device, self.models.default)
        except Exception as exc:
            # Reported through the registration; this worker then takes no jobs. Shown by
            # /readyz: the model and the command, no path (the log has the whole error).
            self.info.model_error = public_message(exc)
            logger.error("worker %s cannot load its models: %s", self.id, exc)
        self.presence.publish()
        self.queue.set_handler(self.run_task)

    def request_stop(self) -> None:
        """Stop after the running job (which is checkpointed and handed back)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def serve(self) -> None:
        """Take tasks until request_stop(); a worker without models only heartbeats."""
        delay = 0.05
        while not self._stop.is_set():
            if not self.info.ready:
                self._stop.wait(1.0)
                continue
            try:
                task = self.queue.dequeue()
            except Exception as exc:
                # Redis down or SQLite busy: back off, keep heartbeating, try again.
                logger.warning("worker %s: queue unreachable (%s), retrying", self.id, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            if task is None:
                if not self.queue.blocking:
                    self._stop.wait(0.1)
                continue
            try:
                self.queue.execute(task)
            except Exception as exc:
                # run_task reports the job's own failures; this is Huey's bookkeeping after the
                # task (the queue went down meanwhile): the worker must live on.
                logger.warning("worker %s: queue unreachable after a task (%s)", self.id, exc)
        self._finish()

    def abandon(self) -> None:
        """After a crash: stop heart-beating for the worker and its jobs (they are lost)."""
        self.presence.abandon()
        self._finish()

    def _finish(self) -> None:
        self._encoder.shutdown(wait=True)
        self.presence.stopped()

    # Tasks

    def run_task(self, job_id: str, attempt: int, payload: Mapping[str, Any]) -> None:
        """Run one attempt of a job, and the queued jobs that join its batch meanwhile."""
        if not claimable(self.queue, job_id, attempt) or not self._claim(job_id, attempt):
            return
        start = partial(self._new_run, job_id, attempt, payload)
        first, error = guarded(job_id, attempt, start)
        if first is None:
            self.presence.end(job_id, attempt, error)  # failed, or stopped during its setup
            return
        self._run_batch(first)

    def _claim(self, job_id: str, attempt: int) -> bool:
        if not self.presence.claim(job_id, attempt):
            logger.info("job %s attempt %s already claimed", job_id, attempt)
            return False
        logger.info("job %s attempt %s started on worker %s", job_id, attempt, self.id)
        return True

    def _new_run(self, job_id: str, attempt: int, payload: Mapping[str, Any]) -> JobRun:
        request = JobCreate.model_validate(payload["params"])
        models = self.models.for_job(job_id, models_key(self.settings, request))
        timeout = self.settings.job_timeout_seconds
        stop = SetupStop(self.queue, job_id, attempt, timeout, lambda: self.stopping)
        start: Callable[..., JobRun] = JobRun.start
        extra: dict[str, Any] = {}
        if request.kind.animated:
            start, extra = AnimationRun.start, {"video_limits": self.settings.video_limits()}
        try:
            run = start(
                job_id,
                attempt,
                payload,
                models,
                device=self.device,
                put=self.presence.put,
                sign=self.presence.sign,
                timeout_seconds=timeout,
                checkpoint_every=self.settings.checkpoint_every,
                encoder=self._encoder,
                should_stop=stop,
                **extra,
            )
        except SetupStopped:
            logger.info("job %s attempt %s stopped during setup: %s", job_id, attempt, stop.reason)
            raise StoppedDuringSetup(stop.result()) from None
        if run.first_iteration:
            logger.info("job %s resumes at iteration %s", job_id, run.first_iteration)
        if isinstance(run, AnimationRun) and run.first_frame:
            logger.info("job %s resumes at frame %s", job_id, run.first_frame)
        return run

    # The step loop

    def _run_batch(self, first: JobRun) -> None:
        """Step `first`, and the jobs that join it, until every one has ended."""
        batch: Batch
        if isinstance(first, AnimationRun):
            batch = SoloStep(first.animation)  # an animation is never batched
        else:
            batch = BatchGeneration(first.generation.models, [first.generation], device=self.device)
        runs = [first]
        try:
            self._step_until_done(batch, runs)
        except Exception:
            # A bug or a broken device outside the guarded steps: no run may be left heart-beating.
            logger.error("the batch loop failed:\n%s", traceback.format_exc())
            for run in list(runs):
                self._leave(batch, runs, run, Result.failure(run.attempt, *INTERNAL_ERROR))

    def _step_until_done(self, batch: Batch, runs: list[JobRun]) -> None:
        """Look at control records, take joiners, step (engine/stepping.step_batch), report."""
        next_control = 0.0
        while runs:
            if time.monotonic() >= next_control or self._stop.is_set():
                for run, reason in self._stop_reasons(runs):
                    result = run.stopped(reason, self.settings.job_timeout_seconds)
                    self._leave(batch, runs, run, result)
                next_control = time.monotonic() + CONTROL_INTERVAL_S
            if runs and not self._stop.is_set():
                self._join_queued(batch, runs)
            if not runs:
                break
            label = "job " + ", ".join(run.job_id for run in runs)
            results, error = guarded(label, runs[0].attempt, partial(step_batch, batch))
            if results is None:
                self._step_failed(batch, runs, error)
                continue
            for run, step in zip(list(runs), results, strict=True):
                self._after_step(batch, runs, run, step)

    def _after_step(self, batch: Batch, runs: list[JobRun], run: JobRun, step: Any) -> None:
        """The run's reports for this step; it leaves once finished or failed."""
        label = f"job {run.job_id}"
        _, error = guarded(label, run.attempt, partial(run.after_step, step))
        if error is None and run.finished:
            final, error = guarded(label, run.attempt, run.result)
            if final is not None:
                self._leave(batch, runs, run, final)
        if error is not None:
            self._leave(batch, runs, run, error)

    def _stop_reasons(self, runs: list[JobRun]) -> list[tuple[JobRun, StopReason]]:
        """The runs that must stop now, and why: shutdown, canceled, superseded or timeout."""
        if self._stop.is_set():
            return [(run, StopReason.shutdown) for run in runs]
        stops = stop_reasons(self.queue, ((run.job_id, run.attempt, run.deadline) for run in runs))
        return [
            (run, stops[(run.job_id, run.attempt)])
            for run in runs
            if (run.job_id, run.attempt) in stops
        ]

    def _join_queued(self, batch: Batch, runs: list[JobRun]) -> None:
        """Take the queued jobs the scheduler offers, in queue order, while the batch has room."""
        for task in self.batching.waiting(runs):
            if not self.batching.has_room(runs):
                return
            if (task.job_id, task.attempt) in self.presence.attempts:
                continue  # joined already: its message is revoked but still listed
            if not self.batching.fits(task, runs) or not self._take(task):
                continue
            start = partial(self._new_run, task.job_id, task.attempt, task.payload)
            run, error = guarded(f"job {task.job_id}", task.attempt, start)
            if error is not None and error.error and error.error.code == "gpu_out_of_memory":
                # No room on the GPU after all: hand it back untouched, batch no more.
                self._limit_batch(len(runs))
                error = Result(task.attempt, Outcome.interrupted, iteration=0)
            if run is None:
                self.presence.end(
                    task.job_id, task.attempt, error
                )  # failed or stopped during setup
                continue
            try:
                batch.add(run.generation)
            except ValueError:
                logger.error(
                    "job %s cannot join the batch:\n%s", task.job_id, traceback.format_exc()
                )
                run.close()
                self.presence.end(
                    task.job_id, task.attempt, Result.failure(run.attempt, *INTERNAL_ERROR)
                )
                continue
            runs.append(run)
            logger.info(
                "job %s attempt %s joined a batch of %d", task.job_id, task.attempt, len(runs)
            )

    def _take(self, task: QueuedTask) -> bool:
        """Claim a waiting task for the batch, then revoke its message so it never runs again.

        A claim lost to another worker leaves the message alone: that worker runs it, or already
        did (a later copy finds the claim taken, or the job ended and its control gone)."""
        try:
            if not claimable(self.queue, task.job_id, task.attempt, joining=True):
                return False
            if not self._claim(task.job_id, task.attempt):
                return False
        except Exception as exc:
            logger.warning("job %s could not join the batch (%s)", task.job_id, exc)
            return False
        try:
            self.queue.revoke(task.task_id)
        except Exception as exc:
            # Harmless: the message is skipped anyway once dequeued (claimed, or job ended).
            logger.warning("job %s: its queue message was not revoked (%s)", task.job_id, exc)
        return True

    def _limit_batch(self, jobs: int) -> None:
        """Batch at most `jobs` jobs from now on (after the GPU ran out of memory)."""
        self.info.batch_jobs = self.batching.limit(jobs)

    def _step_failed(self, batch: Batch, runs: list[JobRun], error: Result | None) -> None:
        """A batched step raised: the whole batch fails, unless halving it may fix a GPU OOM."""
        code = error.error.code if error is not None and error.error is not None else None
        if code == "gpu_out_of_memory" and len(runs) > 1:
            keep = max(1, len(runs) // 2)
            self._limit_batch(keep)
            logger.warning(
                "GPU out of memory with %d jobs batched: %d handed back, at most %d from now on",
                len(runs),
                len(runs) - keep,
                self.batch_jobs,
            )
            # The latest to join go back to the queue from a checkpoint of where they are.
            for run in runs[keep:]:
                self._leave(batch, runs, run, run.stopped(StopReason.shutdown, 0))
            return
        if len(runs) > 1:
            # Which job broke the step is unknown: the first goes on alone (and fails alone if it
            # is the one), the others go back to the queue and run alone for a while.
            logger.warning("a batched step failed: %d jobs handed back", len(runs) - 1)
            self.batching.pause()
            for run in runs[1:]:
                self._leave(batch, runs, run, run.stopped(StopReason.shutdown, 0))
            return
        for run in list(runs):
            self._leave(batch, runs, run, error)

    def _leave(self, batch: Batch, runs: list[JobRun], run: JobRun, result: Result | None) -> None:
        """Take a run out of the batch and report how it ended (after its last preview)."""
        if run.generation in batch.generations:
            batch.remove(run.generation)
        runs.remove(run)
        run.close()  # its last preview is out, an unfinished timelapse removed
        self.presence.end(run.job_id, run.attempt, result)
