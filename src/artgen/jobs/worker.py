"""Worker: owns the loaded models, runs job tasks from the queue and reports through it."""

from __future__ import annotations

import gc
import io
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from artgen.config import Settings
from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.schemas import JobCreate, WorkerInfo

if TYPE_CHECKING:
    from artgen.models.loading import Models

logger = logging.getLogger("artgen.jobs.worker")

# (vqgan name, clip names, device) -> Models
ModelsLoader = Callable[[str, list[str], torch.device], "Models"]

# Progress reports are throttled to this interval (and forced at previews and the end).
PROGRESS_INTERVAL_S = 0.1
VIDEO_FPS = 10


class ModelUnavailable(Exception):
    """The job names models this worker cannot load."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_models_loader(settings: Settings) -> ModelsLoader:
    """load_models through the catalog in settings.home."""

    def load(vqgan: str, clips: list[str], device: torch.device) -> Models:
        from artgen.models.catalog import Catalog
        from artgen.models.loading import load_models

        return load_models(vqgan, clips, device, Catalog(settings.home))

    return load


def png_bytes(image: Image.Image, metadata: dict[str, str] | None = None) -> bytes:
    """Encode a PIL image as PNG, with optional text chunks."""
    info = None
    if metadata:
        info = PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def encode_mp4(frames: list[Any], fps: int = VIDEO_FPS) -> bytes:
    """Encode RGB uint8 frames (H, W, 3) as an H.264 MP4 with imageio-ffmpeg."""
    import imageio.v2 as imageio

    with tempfile.TemporaryDirectory(prefix="artgen-video-") as directory:
        path = Path(directory) / "video.mp4"
        imageio.mimwrite(path, frames, fps=fps, codec="libx264", quality=8, macro_block_size=16)
        return path.read_bytes()


def _decode_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


@dataclass
class _Run:
    """State of the attempt being run (read by the heartbeat thread)."""

    job_id: str
    attempt: int
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Loads models once, then runs the tasks it dequeues, one at a time."""

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
        self._models: dict[tuple[str, tuple[str, ...]], Models] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Guards _run so no heartbeat of an attempt is written after its result.
        self._run_lock = threading.Lock()
        self._run: _Run | None = None
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
            self.info.model_error = f"{type(exc).__name__}: {exc}"
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

    def _finish(self) -> None:
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
            run = self._run
            if run is not None:
                self._safe_put(Keys.heartbeat(run.job_id, run.attempt), self._stamp())
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
        key = (vqgan, clips)
        with self._lock:
            if key not in self._models:
                # Keep the defaults resident and at most one other set (GPU memory is bounded).
                for other in [k for k in self._models if k != self._default_key]:
                    del self._models[other]
                self._models[key] = self._load(vqgan, list(clips), self.device)
            return self._models[key]

    # Tasks

    def run_task(self, job_id: str, attempt: int, payload: dict[str, Any]) -> None:
        """Run one attempt of a job, unless it was canceled, superseded or claimed already."""
        control = self.queue.control(job_id)
        if control is not None and (control.get("cancel") or control.get("attempt") != attempt):
            logger.info("job %s attempt %s skipped (canceled or superseded)", job_id, attempt)
            if control.get("deleted"):
                self.queue.delete(Keys.control(job_id))  # its last trace in the queue
            return
        if not self.queue.put_if_empty(Keys.claim(job_id, attempt), self._stamp()):
            logger.info("job %s attempt %s already claimed", job_id, attempt)
            return
        logger.info("job %s attempt %s started on worker %s", job_id, attempt, self.id)
        self._run = _Run(job_id, attempt)
        self.info.busy, self.info.job_id = True, job_id
        self._beat()
        result: dict[str, Any] | None = None
        try:
            result = self._attempt(job_id, attempt, payload)
        finally:
            with self._run_lock:
                self._run = None
            self.info.busy, self.info.job_id = False, None
            self._publish()
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

    def _attempt(self, job_id: str, attempt: int, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Generate, mapping every failure to a result the collector understands."""
        try:
            return self._generate(job_id, attempt, payload)
        except ModelUnavailable as exc:
            return _failure("model_unavailable", str(exc))
        except torch.cuda.OutOfMemoryError:
            logger.warning("job %s: GPU out of memory", job_id)
            failure = _failure("gpu_out_of_memory", "the GPU ran out of memory; try a smaller size")
        except MemoryError:
            logger.warning("job %s: out of memory", job_id)
            failure = _failure("out_of_memory", "the worker ran out of memory; try a smaller size")
        except Exception:
            logger.error("job %s attempt %s failed:\n%s", job_id, attempt, traceback.format_exc())
            return _failure("internal_error", "the generation failed unexpectedly")
        # Outside the except block the traceback, and the tensors its frames held, are gone.
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        return failure

    def _generate(
        self, job_id: str, attempt: int, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        from artgen.engine.generate import Generation, StepInfo, run

        request = JobCreate.model_validate(payload["params"])
        vqgan = request.model or self.settings.model
        clips = tuple(request.clip_models or self.settings.resolved_clip_models)
        try:
            models = self._models_for(vqgan, clips)
        except Exception as exc:
            names = f"{vqgan} / {', '.join(clips)}"
            raise ModelUnavailable(f"cannot load models {names}: {exc}") from exc

        init_data = payload.get("init_image")
        generation = Generation(
            models,
            request.generation_params(),
            device=self.device,
            init_image=_decode_image(init_data) if init_data else None,
            image_prompts=[_decode_image(data) for data in payload.get("image_prompts", [])],
        )
        checkpoint = payload.get("checkpoint")
        if checkpoint:
            state = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)
            generation.load_state_dict(state)
            logger.info("job %s resumes at iteration %s", job_id, generation.iteration)

        iterations = request.iterations
        first_iteration = generation.iteration
        started = time.monotonic()
        deadline = started + self.settings.job_timeout_seconds
        last_report = 0.0
        frames: list[Any] = []
        stop_reason: list[str] = []

        def report_progress(iteration: int, loss: float | None) -> None:
            done = iteration - first_iteration
            elapsed = time.monotonic() - started
            eta = elapsed / done * (iterations - iteration) if done > 0 else None
            progress = {
                "attempt": attempt,
                "iteration": iteration,
                "iterations": iterations,
                "loss": loss,
                "eta_seconds": eta,
                "seed": generation.seed,
                "start_iteration": first_iteration,
                **self._stamp(),
            }
            self._safe_put(Keys.progress(job_id, attempt), progress)

        def callback(info: StepInfo) -> None:
            nonlocal last_report
            iteration = info.iteration
            is_preview = iteration % request.preview_every == 0 or iteration == iterations
            now = time.monotonic()
            if is_preview or now - last_report >= PROGRESS_INTERVAL_S:
                # loss() syncs the device: only when a report goes out, not every step.
                report_progress(iteration, float(info.loss()))
                last_report = now
            if is_preview:
                image = info.image()
                preview = {"attempt": attempt, "iteration": iteration, "png": png_bytes(image)}
                self._safe_put(Keys.preview(job_id, attempt), preview)
                if request.video:
                    frames.append(_frame(image))
            if iteration % self.settings.checkpoint_every == 0 and iteration < iterations:
                self._checkpoint(job_id, attempt, generation)

        def should_stop() -> bool:
            reason = self._stop_reason(job_id, attempt, deadline)
            if reason is not None:
                stop_reason.append(reason)
                return True
            return False

        report_progress(first_iteration, None)
        final = run(generation, callback, should_stop)
        if stop_reason:
            return self._stopped(job_id, attempt, generation, stop_reason[0])
        metadata = {
            "prompt": request.prompts,
            "seed": str(generation.seed),
            "params": request.model_copy(update={"seed": generation.seed}).model_dump_json(),
            "software": "artgen",
        }
        result: dict[str, Any] = {
            "status": "succeeded",
            "iteration": generation.iteration,
            "seed": generation.seed,
            "png": png_bytes(final, metadata),
        }
        if request.video and frames:
            result["mp4"] = encode_mp4(frames)
        return result

    def _stop_reason(self, job_id: str, attempt: int, deadline: float) -> str | None:
        if self._stop.is_set():
            return "shutdown"
        try:
            control = self.queue.control(job_id)
        except Exception:
            control = None  # an unreachable queue must not stop the job
        if control is not None:
            if control.get("cancel"):
                return "canceled"
            if control.get("attempt") != attempt:
                return "superseded"
        if time.monotonic() > deadline:
            return "timeout"
        return None

    def _stopped(self, job_id: str, attempt: int, generation: Any, reason: str) -> dict | None:
        logger.info("job %s attempt %s stopped: %s", job_id, attempt, reason)
        if reason == "canceled":
            return {"status": "canceled", "iteration": generation.iteration}
        if reason == "timeout":
            limit = self.settings.job_timeout_seconds
            return _failure("timeout", f"the job ran longer than {limit:g} seconds")
        if reason == "shutdown":
            # Hand the job back: the collector requeues it and it resumes from here.
            self._checkpoint(job_id, attempt, generation)
            return {"status": "interrupted", "iteration": generation.iteration}
        return None  # superseded: another attempt owns the job now

    def _checkpoint(self, job_id: str, attempt: int, generation: Any) -> None:
        buffer = io.BytesIO()
        torch.save(generation.state_dict(), buffer)
        checkpoint = {"attempt": attempt, "iteration": generation.iteration}
        checkpoint["state"] = buffer.getvalue()
        self._safe_put(Keys.checkpoint(job_id, attempt), checkpoint)


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error": {"code": code, "message": message}}


def _frame(image: Image.Image) -> Any:
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.uint8)


class EmbeddedWorker:
    """A Worker serving in a thread of the API process; stop() hands the running job back."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._thread = threading.Thread(target=self._main, name="artgen-worker", daemon=True)

    def _main(self) -> None:
        try:
            self.worker.start()
            self.worker.serve()
        except Exception:
            logger.exception("embedded worker crashed")

    def start(self) -> EmbeddedWorker:
        """Start the thread (models load inside it, so the API answers meanwhile)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Checkpoint the running job, hand it back and wait for the thread."""
        self.worker.request_stop()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.worker.queue.close()

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()


def start_embedded_worker(
    settings: Settings, queue: JobQueue, models_loader: ModelsLoader | None = None
) -> EmbeddedWorker:
    """Run a worker inside this process (the sqlite:/// default of `artgen serve`)."""
    # Its own JobQueue (same URL): the worker's storage connection is not the collector's.
    worker_queue = JobQueue.from_url(queue.url, name=queue.huey.name)
    return EmbeddedWorker(Worker(settings, worker_queue, models_loader)).start()


def run_worker(
    settings: Settings,
    models_loader: ModelsLoader | None = None,
    *,
    worker_id: str | None = None,
) -> int:
    """`artgen worker`: serve the queue until SIGTERM/SIGINT, then hand the running job back.

    One process per GPU, started by the operator (systemd instance, container replica), never
    forked from a process that has touched CUDA: this function forks nothing, the job runs in this
    process's main thread, and anything started later through multiprocessing is spawned.
    """
    # CUDA state does not survive fork(): a library reaching for multiprocessing must spawn.
    multiprocessing.set_start_method("spawn", force=True)
    queue = JobQueue.from_url(settings.resolved_queue_url)
    worker = Worker(settings, queue, models_loader, worker_id=worker_id)

    def on_signal(signum: int, frame: Any) -> None:
        logger.info("worker %s: signal %s, stopping after a checkpoint", worker.id, signum)
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    worker.serve()
    queue.close()
    return 1 if worker.info.model_error else 0


# prctl(2) option: the signal this process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
WORKER_STOP_TIMEOUT_S = 60.0


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM ourselves (checkpoint, hand the job back) when the API process is gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())

    def watch() -> None:
        # Covers other platforms, and a parent that died before prctl took effect.
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        logger.warning("worker process: the API process %s is gone, stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="artgen-parent-watch", daemon=True).start()


def _worker_process_main(settings: Settings, worker_id: str, parent_pid: int) -> None:
    """Entry point of the spawned worker process of `artgen serve --worker-process`."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _die_with_parent(parent_pid)
    sys.exit(run_worker(settings, worker_id=worker_id))


class WorkerProcess:
    """A worker in a spawned child process on the same queue; stop() hands the running job back."""

    def __init__(self, process: multiprocessing.process.BaseProcess, worker_id: str) -> None:
        self.process = process
        self.worker_id = worker_id

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the child process is running."""
        return self.process.is_alive()

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> None:
        """SIGTERM (checkpoint, hand the job back), wait up to `timeout`, then kill."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout)
        if self.process.is_alive():
            logger.error("worker process %s did not stop in %ss: killing it", self.pid, timeout)
            self.process.kill()
            self.process.join(5.0)


def start_worker_process(settings: Settings) -> WorkerProcess:
    """Run the embedded worker as a spawned child process (its own interpreter lock).

    Call it from a thread that lives as long as the server (the event loop's): on Linux the
    parent-death signal fires when the thread that started the child exits.
    """
    worker_id = f"{socket.gethostname()}-{os.getpid()}-proc-{uuid.uuid4().hex[:6]}"
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_worker_process_main,
        args=(settings, worker_id, os.getpid()),
        name="artgen-worker",
        daemon=False,
    )
    process.start()
    logger.info("worker process %s started (worker %s)", process.pid, worker_id)
    return WorkerProcess(process, worker_id)
