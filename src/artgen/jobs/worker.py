"""Worker: owns the loaded models, runs job tasks from the queue and reports through it.

Jobs of the same size and models are stepped together: while a job runs, the worker takes queued
jobs it can batch with it (up to `batch_jobs` jobs and `batch_pixels` output pixels), claims them,
revokes their queue messages and adds them to the running BatchGeneration; each leaves the batch
when it finishes, fails or is canceled.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from artgen.config import Settings
from artgen.devices import resolve_device
from artgen.jobs.animation_run import AnimationRun, SoloStep
from artgen.jobs.job_run import JobRun, failure
from artgen.jobs.queue import InputsMissing, JobQueue, Keys, QueuedTask
from artgen.jobs.schemas import JobCreate, WorkerInfo

if TYPE_CHECKING:
    from artgen.engine.batch import BatchGeneration
    from artgen.models.loading import Models

logger = logging.getLogger("artgen.jobs.worker")

# (vqgan name, clip names, device) -> Models
ModelsLoader = Callable[[str, list[str], torch.device], "Models"]

# While a batch has room, the queue is looked at (a count of its tasks) this often ...
BATCH_SCAN_INTERVAL_S = 0.1
# ... looking at this many waiting tasks (a scan reads their payloads, init images included) ...
BATCH_SCAN_LIMIT = 32
# ... and an unchanged queue (same number of tasks) again only after this long.
BATCH_RESCAN_S = 5.0
# Cancel flags, superseding attempts and deadlines are looked at this often (not every step: on
# a GPU a step takes milliseconds, a queue round trip a good part of one).
CONTROL_INTERVAL_S = 0.05
# After a batched step failed (not out of memory), the worker batches nothing for this long.
BATCH_PAUSE_AFTER_ERROR_S = 60.0
INTERNAL_ERROR = ("internal_error", "the generation failed unexpectedly")
# Jobs stepped together when settings.batch_jobs is unset: on CUDA batching pays; on a CPU it
# only delays the first job.
DEFAULT_CUDA_BATCH_JOBS = 8


class ModelUnavailable(Exception):
    """The job names models this worker cannot load."""


class StoppedDuringSetup(Exception):
    """The job was canceled, superseded, timed out or handed back while being set up."""

    def __init__(self, result: dict[str, Any] | None) -> None:
        super().__init__("stopped during setup")
        self.result = result  # None: superseded (another attempt owns the job)


class SetupStop:
    """`should_stop` for a job's setup: the worker stopping, the job's deadline, or its control
    record saying cancel or another attempt (read at most every CONTROL_INTERVAL_S)."""

    def __init__(self, worker: Worker, job_id: str, attempt: int) -> None:
        self.worker, self.job_id, self.attempt = worker, job_id, attempt
        self.deadline = time.monotonic() + worker.settings.job_timeout_seconds
        self.reason: str | None = None
        self._next_look = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.worker.stopping:
            self.reason = "shutdown"
        elif now > self.deadline:
            self.reason = "timeout"
        elif now >= self._next_look:
            self._next_look = now + CONTROL_INTERVAL_S
            try:
                control = self.worker.queue.control(self.job_id)
            except Exception:
                control = None  # an unreachable queue must not stop the job
            if isinstance(control, dict) and control.get("cancel"):
                self.reason = "canceled"
            elif isinstance(control, dict) and control.get("attempt") != self.attempt:
                self.reason = "superseded"
        return self.reason is not None

    def result(self) -> dict[str, Any] | None:
        """What the attempt reports (nothing when superseded); the store keeps its checkpoint."""
        if self.reason == "canceled":
            return {"status": "canceled"}
        if self.reason == "timeout":
            limit = self.worker.settings.job_timeout_seconds
            return failure("timeout", f"the job ran longer than {limit:g} seconds")
        if self.reason == "shutdown":
            return {"status": "interrupted"}
        return None


def default_models_loader(settings: Settings) -> ModelsLoader:
    """load_models through the catalog in settings.home."""

    def load(vqgan: str, clips: list[str], device: torch.device) -> Models:
        from artgen.models.catalog import Catalog
        from artgen.models.loading import load_models

        return load_models(vqgan, clips, device, Catalog(settings.home))

    return load


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
        self._load = models_loader or default_models_loader(settings)
        self._default_key = (settings.model, tuple(settings.resolved_clip_models))
        # (vqgan, clips) -> Models, least recently used first (bounded by model_cache_size).
        self._models: OrderedDict[tuple[str, tuple[str, ...]], Models] = OrderedDict()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Guards _runs so no heartbeat of an attempt is written after its result.
        self._run_lock = threading.Lock()
        self._runs: list[tuple[str, int]] = []  # (job_id, attempt) of every attempt running
        # Encodes and publishes previews off the generation loop (one thread, started on demand).
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artgen-preview")
        # After a batched step failed for no known job, jobs run alone until this time.
        self._batching_paused_until = 0.0
        # ((tasks queued, the batch's jobs), time) at the last look for jobs to batch.
        self._last_scan: tuple[tuple[int, tuple[str, ...]], float] = ((0, ()), 0.0)
        # Jobs stepped together at most; lowered for good after the GPU runs out of memory.
        self.batch_jobs = settings.batch_jobs or (
            DEFAULT_CUDA_BATCH_JOBS if self.device.type == "cuda" else 1
        )
        self._slot: int | None = None
        self._publish_lock = threading.Lock()
        # Set once our registration was written: from then on its absence means data loss.
        self._published = False
        self._reports_ok = True
        self._heartbeat_thread: threading.Thread | None = None
        self.info = WorkerInfo(
            id=self.id,
            device=str(self.device),
            model=settings.model,
            clip_models=list(settings.resolved_clip_models),
            batch_jobs=self.batch_jobs,
        )

    @property
    def heartbeat_interval(self) -> float:
        """Well inside the lease so one lost write does not look like a dead worker."""
        return max(0.1, min(2.0, self.settings.lease_seconds / 5))

    # Lifecycle

    def start(self) -> None:
        """Register, start heartbeats and load the default models (errors are reported)."""
        self._slot = self._retry(self.queue.register_worker)
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"artgen-heartbeat-{self.id}", daemon=True
        )
        self._heartbeat_thread.start()
        try:
            if self.device.type == "cuda" and self.device.index is not None:
                # Calls that take no device (empty_cache after an OOM) then act on ours, and no
                # worker of a multi-GPU host opens a stray context on cuda:0.
                torch.cuda.set_device(self.device)
            self._models_for(*self._default_key)
            self.info.ready = True
            logger.info("worker %s ready on %s with %s", self.id, self.device, self._default_key)
        except Exception as exc:
            # Reported through the registration; this worker then takes no jobs.
            from artgen.models.catalog import public_message

            # Shown by /readyz: the model and the command, no path (the log has the whole error).
            self.info.model_error = public_message(exc)
            logger.error("worker %s cannot load its models: %s", self.id, exc)
        self._publish()
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
        with self._run_lock:
            self._runs.clear()
        self._finish()

    def _finish(self) -> None:
        self._encoder.shutdown(wait=True)
        self.info.stopped = True
        self.info.busy = False
        self._publish()

    # Heartbeats and registration

    def _heartbeat_loop(self) -> None:
        while not self.info.stopped:
            self._beat()
            time.sleep(self.heartbeat_interval)

    def _beat(self) -> None:
        with self._run_lock:
            for job_id, attempt in self._runs:
                self._safe_put(Keys.heartbeat(job_id, attempt), self._stamp())
        self._publish()

    def _stamp(self) -> dict[str, Any]:
        return {"worker_id": self.id, "time": time.time()}

    def _publish(self) -> None:
        with self._publish_lock:
            if self._slot is None:
                return
            self.info.heartbeat = time.time()
            try:
                if self._published and not self._owns_slot():
                    # The queue storage lost its data (Redis restarted empty), and maybe another
                    # worker re-registered into our old slot meanwhile: take a fresh one.
                    self._slot = self.queue.register_worker()
            except Exception:
                return  # unreachable; the next heartbeat tries again
            if self._safe_put(Keys.worker(self._slot), self.info.model_dump()):
                self._published = True

    def _owns_slot(self) -> bool:
        """Whether our registration is still there, and still ours."""
        assert self._slot is not None
        current = self.queue.peek(Keys.worker(self._slot))
        return isinstance(current, dict) and current.get("id") == self.id

    def _safe_put(self, key: str, value: Any) -> bool:
        """A lossy report: a failed write is logged (once per outage), the job goes on."""
        try:
            self.queue.put(key, value)
        except Exception as exc:
            if self._reports_ok:
                logger.warning("worker %s: reports are being lost (%s)", self.id, exc)
            self._reports_ok = False
            return False
        if not self._reports_ok:
            logger.info("worker %s: reports reach the queue again", self.id)
        self._reports_ok = True
        return True

    def _retry(self, action: Callable[[], Any], attempts: int = 30) -> Any:
        """Run an action that must reach the queue, backing off while it cannot."""
        delay = 0.1
        for remaining in range(attempts, 0, -1):
            try:
                return action()
            except Exception:
                if remaining == 1:
                    raise
                logger.warning("worker %s: queue unreachable, retrying", self.id, exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        return None

    # Models

    def _models_for(self, vqgan: str, clips: tuple[str, ...]) -> Models:
        """The loaded set, from an LRU cache of model_cache_size sets (the default set stays)."""
        key = (vqgan, clips)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            evictable = [other for other in self._models if other != self._default_key]
            evicted = False
            while evictable and len(self._models) >= self.settings.model_cache_size:
                del self._models[evictable.pop(0)]
                evicted = True
            if evicted:
                # What the evicted sets held is freed before the next set loads.
                gc.collect()
                if torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
            models = self._models[key] = self._load_unique(vqgan, clips)
            return models

    def _load_unique(self, vqgan: str, clips: tuple[str, ...]) -> Models:
        """Load each CLIP model once; a name given twice shares the loaded critic."""
        unique = list(dict.fromkeys(clips))
        models = self._load(vqgan, unique, self.device)
        if len(unique) == len(clips):
            return models
        by_name = dict(zip(unique, models.critics, strict=True))
        return replace(models, critics=[by_name[name] for name in clips], clip_names=list(clips))

    # Tasks

    def run_task(self, job_id: str, attempt: int, payload: Mapping[str, Any]) -> None:
        """Run one attempt of a job, and the queued jobs that join its batch meanwhile."""
        if not self._claimable(job_id, attempt) or not self._claim(job_id, attempt):
            return
        first, error = self._attempt(job_id, lambda: self._new_run(job_id, attempt, payload))
        if first is None:
            self._end(job_id, attempt, error)  # failed, or stopped during its setup
            return
        self._run_batch(first)

    def _claimable(self, job_id: str, attempt: int, *, joining: bool = False) -> bool:
        """False when the attempt was canceled, superseded, or its job is no longer active."""
        control = self.queue.control(job_id)
        if control is None:
            # Every enqueue publishes the control record first, and it is removed when the job
            # ends: a message without one is a stale copy of a finished or deleted job's task.
            if not joining:
                logger.info(
                    "job %s attempt %s skipped (the job is no longer active)", job_id, attempt
                )
            return False
        if control.get("cancel") or control.get("attempt") != attempt:
            if not joining:
                logger.info("job %s attempt %s skipped (canceled or superseded)", job_id, attempt)
                if control.get("deleted"):
                    self.queue.delete(Keys.control(job_id))  # its last trace in the queue
            return False
        return True

    def _claim(self, job_id: str, attempt: int) -> bool:
        """Take the attempt (each runs at most once) and start heart-beating for it."""
        if not self.queue.put_if_empty(Keys.claim(job_id, attempt), self._stamp()):
            logger.info("job %s attempt %s already claimed", job_id, attempt)
            return False
        logger.info("job %s attempt %s started on worker %s", job_id, attempt, self.id)
        with self._run_lock:
            self._runs.append((job_id, attempt))
        self._update_busy()
        return True

    def _update_busy(self) -> None:
        self.info.job_ids = [job_id for job_id, _ in self._runs]
        self.info.busy = bool(self.info.job_ids)
        self.info.job_id = self.info.job_ids[0] if self.info.job_ids else None
        self._beat()

    def _new_run(self, job_id: str, attempt: int, payload: Mapping[str, Any]) -> JobRun:
        request = JobCreate.model_validate(payload["params"])
        vqgan, clips = self._models_key(request)
        try:
            models = self._models_for(vqgan, clips)
        except Exception as exc:
            from artgen.models.catalog import public_message

            names = f"{vqgan} / {', '.join(clips)}"
            logger.error("job %s: cannot load models %s: %s", job_id, names, exc)
            raise ModelUnavailable(f"cannot load models {names}: {public_message(exc)}") from exc
        from artgen.engine.generate import SetupStopped

        stop = SetupStop(self, job_id, attempt)
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
                put=self._safe_put,
                stamp=self._stamp,
                timeout_seconds=self.settings.job_timeout_seconds,
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

    def _models_key(self, request: JobCreate) -> tuple[str, tuple[str, ...]]:
        """The (VQGAN, CLIP models) a request runs with."""
        clips = request.clip_models or self.settings.clip_models_for(request.model)
        return request.model or self.settings.model, tuple(clips)

    def _attempt(self, label: str, action: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
        """(action(), None), or (None, the failure result the collector understands)."""
        try:
            return action(), None
        except ModelUnavailable as exc:
            return None, failure("model_unavailable", str(exc))
        except StoppedDuringSetup as exc:
            return None, exc.result
        except InputsMissing as exc:
            # The queue lost data: hand the job back; the API enqueues it again with its inputs.
            logger.warning("%s: %s", label, exc)
            return None, {"status": "interrupted", "iteration": 0, "lost": True}
        except torch.cuda.OutOfMemoryError:
            logger.warning("%s: GPU out of memory", label)
            result = failure("gpu_out_of_memory", "the GPU ran out of memory; try a smaller size")
        except MemoryError:
            logger.warning("%s: out of memory", label)
            result = failure("out_of_memory", "the worker ran out of memory; try a smaller size")
        except Exception:
            logger.error("%s failed:\n%s", label, traceback.format_exc())
            return None, failure(*INTERNAL_ERROR)
        # Outside the except block the traceback, and the tensors its frames held, are gone.
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        return None, result

    # The batch loop

    def _run_batch(self, first: JobRun) -> None:
        """Step `first`, and the jobs that join it, until every one has ended."""
        from artgen.engine.batch import BatchGeneration

        batch: BatchGeneration | SoloStep
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
                self._leave(batch, runs, run, failure(*INTERNAL_ERROR))

    def _step_until_done(self, batch: BatchGeneration | SoloStep, runs: list[JobRun]) -> None:
        from artgen.engine.stepping import step_batch  # the step engine.run takes too

        next_scan = next_control = 0.0
        while runs:
            if time.monotonic() >= next_control or self._stop.is_set():
                for run, reason in self._stop_reasons(runs):
                    result = run.stopped(reason, self.settings.job_timeout_seconds)
                    self._leave(batch, runs, run, result)
                next_control = time.monotonic() + CONTROL_INTERVAL_S
            if runs and time.monotonic() >= next_scan:
                self._join_queued(batch, runs)
                next_scan = time.monotonic() + BATCH_SCAN_INTERVAL_S
            if not runs:
                break
            label = "job " + ", ".join(run.job_id for run in runs)
            results, error = self._attempt(label, partial(step_batch, batch))
            if error is not None:
                self._step_failed(batch, runs, error)
                continue
            for run, step in zip(list(runs), results, strict=True):
                label = f"job {run.job_id}"
                _, error = self._attempt(label, partial(run.after_step, step))
                if error is None and run.finished:
                    final, error = self._attempt(label, run.succeeded)
                    if error is None:
                        self._leave(batch, runs, run, final)
                if error is not None:
                    self._leave(batch, runs, run, error)

    def _stop_reasons(self, runs: list[JobRun]) -> list[tuple[JobRun, str]]:
        """The runs that must stop now, and why: shutdown, canceled, superseded or timeout."""
        if self._stop.is_set():
            return [(run, "shutdown") for run in runs]
        try:
            controls = self.queue.peek_many(Keys.control(run.job_id) for run in runs)
        except Exception:
            controls = {}  # an unreachable queue must not stop the jobs
        now = time.monotonic()
        stops = []
        for run in runs:
            control = controls.get(Keys.control(run.job_id))
            if isinstance(control, dict) and control.get("cancel"):
                stops.append((run, "canceled"))
            elif isinstance(control, dict) and control.get("attempt") != run.attempt:
                stops.append((run, "superseded"))
            elif now > run.deadline:
                stops.append((run, "timeout"))
        return stops

    def _join_queued(self, batch: BatchGeneration | SoloStep, runs: list[JobRun]) -> None:
        """Take queued jobs that can step with the batch, in queue order, while it has room."""
        if len(runs) >= self.batch_jobs or self._stop.is_set() or isinstance(batch, SoloStep):
            return
        if time.monotonic() < self._batching_paused_until:
            return
        try:
            pending = self.queue.pending_count()
            seen = (pending, tuple(run.job_id for run in runs))
            if pending == 0 or (
                seen == self._last_scan[0]
                and time.monotonic() - self._last_scan[1] < BATCH_RESCAN_S
            ):
                return  # nothing queued, or neither the queue nor the batch changed since
            self._last_scan = (seen, time.monotonic())
            waiting = self.queue.queued_tasks(BATCH_SCAN_LIMIT)
        except Exception:
            return  # the queue is unreachable: the batch goes on as it is
        for task in waiting:
            if len(runs) >= self.batch_jobs:
                return
            if (task.job_id, task.attempt) in self._runs:
                continue  # joined already: its message is revoked but still listed
            if not self._fits(task, runs) or not self._take(task):
                continue
            start = partial(self._new_run, task.job_id, task.attempt, task.payload)
            run, error = self._attempt(f"job {task.job_id}", start)
            if error is not None and error.get("error", {}).get("code") == "gpu_out_of_memory":
                # No room on the GPU after all: hand it back untouched, batch no more.
                self._limit_batch(len(runs))
                error = {"status": "interrupted", "iteration": 0}
            if run is None:
                self._end(task.job_id, task.attempt, error)  # failed or stopped during setup
                continue
            try:
                batch.add(run.generation)
            except ValueError:
                logger.error(
                    "job %s cannot join the batch:\n%s", task.job_id, traceback.format_exc()
                )
                run.close()
                self._end(task.job_id, task.attempt, failure(*INTERNAL_ERROR))
                continue
            runs.append(run)
            logger.info(
                "job %s attempt %s joined a batch of %d", task.job_id, task.attempt, len(runs)
            )

    def _fits(self, task: QueuedTask, runs: list[JobRun]) -> bool:
        """Same models and output size as the batch, and within its pixel budget."""
        from artgen.engine.generate import rounded_size

        first = runs[0].generation
        try:
            request = JobCreate.model_validate(task.payload["params"])
            size = rounded_size(request.width, request.height, first.models.vqgan.factor)
        except Exception:
            return False  # it fails on its own when a worker takes it
        if request.kind.animated or runs[0].request.kind.animated:
            return False  # animations step alone
        if self._models_key(request) != self._models_key(runs[0].request):
            return False
        if size != (first.width, first.height):
            return False
        pixels = sum(run.pixels for run in runs) + size[0] * size[1]
        return pixels <= self.settings.batch_pixels

    def _take(self, task: QueuedTask) -> bool:
        """Claim a waiting task for the batch, then revoke its message so it never runs again.

        A claim lost to another worker leaves the message alone: that worker runs it, or already
        did (a later copy finds the claim taken, or the job ended and its control gone)."""
        try:
            if not self._claimable(task.job_id, task.attempt, joining=True):
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
        self.batch_jobs = self.info.batch_jobs = max(1, min(self.batch_jobs, jobs))

    def _step_failed(
        self, batch: BatchGeneration | SoloStep, runs: list[JobRun], error: dict[str, Any]
    ) -> None:
        """A batched step raised: the whole batch fails, unless halving it may fix a GPU OOM."""
        if error["error"]["code"] == "gpu_out_of_memory" and len(runs) > 1:
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
                self._leave(batch, runs, run, run.stopped("shutdown", 0))
            return
        if len(runs) > 1:
            # Which job broke the step is unknown: the first goes on alone (and fails alone if it
            # is the one), the others go back to the queue and run alone for a while.
            logger.warning("a batched step failed: %d jobs handed back", len(runs) - 1)
            self._batching_paused_until = time.monotonic() + BATCH_PAUSE_AFTER_ERROR_S
            for run in runs[1:]:
                self._leave(batch, runs, run, run.stopped("shutdown", 0))
            return
        for run in list(runs):
            self._leave(batch, runs, run, error)

    def _leave(
        self,
        batch: BatchGeneration | SoloStep,
        runs: list[JobRun],
        run: JobRun,
        result: dict[str, Any] | None,
    ) -> None:
        """Take a run out of the batch and report how it ended (after its last preview)."""
        if run.generation in batch.generations:
            batch.remove(run.generation)
        runs.remove(run)
        run.close()  # its last preview is out, an unfinished timelapse removed
        self._end(run.job_id, run.attempt, result)

    def _end(self, job_id: str, attempt: int, result: dict[str, Any] | None) -> None:
        """Stop heart-beating for the attempt, then report its result (None: superseded)."""
        with self._run_lock:
            self._runs.remove((job_id, attempt))
        self._update_busy()
        outcome = result["status"] if result is not None else "superseded"
        logger.info("job %s attempt %s ended: %s", job_id, attempt, outcome)
        if result is not None:
            self._report_result(job_id, attempt, result)

    def _report_result(self, job_id: str, attempt: int, result: dict[str, Any]) -> None:
        result["attempt"] = attempt
        try:
            # Every step retried: the queue may be down right when the job ends.
            control = self._retry(lambda: self.queue.control(job_id)) or {}
            if control.get("deleted"):
                self._retry(lambda: self.queue.clear_job(job_id, attempt))
                return
            self._retry(lambda: self.queue.put(Keys.result(job_id, attempt), result))
        except Exception:
            # The lease runs out and the reaper requeues the job from its checkpoint.
            logger.error("job %s: result could not be reported", job_id, exc_info=True)
