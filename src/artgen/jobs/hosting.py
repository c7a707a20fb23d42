"""Where a Worker runs: a thread of the API process, a spawned child process, or `artgen worker`.

The API process holds its own worker (thread or child) as a HostedWorker: the one interface its
supervisor and /readyz use, whichever kind it is.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any, Protocol

from artgen.config import Settings
from artgen.jobs.model_cache import ModelsLoader
from artgen.jobs.queue import JobQueue
from artgen.jobs.schemas import ServiceHealth
from artgen.jobs.worker import Worker

logger = logging.getLogger("artgen.jobs.worker")


class HostedWorker(Protocol):
    """The API process's own worker, as its supervisor and /readyz see it."""

    @property
    def worker_id(self) -> str:
        """The id its jobs carry (Job.worker_id)."""
        ...

    @property
    def alive(self) -> bool:
        """Whether it is running."""
        ...

    @property
    def exit_code(self) -> int | None:
        """A child process's exit code once it ended; None for a thread or while running."""
        ...

    def ready(self, health: ServiceHealth) -> bool:
        """Whether its models are loaded (`health`: the workers' registrations)."""
        ...

    def stop(self, timeout: float = ...) -> None:
        """Hand the running job back and wait for it to end."""
        ...


class EmbeddedWorker:
    """A Worker serving in a thread of the API process; stop() hands the running job back."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._thread = threading.Thread(target=self._main, name="artgen-worker", daemon=True)

    def _main(self) -> None:
        try:
            self.worker.start()
            self.worker.serve()
        except BaseException:  # in a thread even SystemExit ends only the worker
            logger.exception("embedded worker crashed")
            # Its heartbeats must stop too, or its jobs would look alive forever.
            self.worker.abandon()

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

    @property
    def worker_id(self) -> str:
        """The thread's Worker's id."""
        return self.worker.id

    @property
    def exit_code(self) -> int | None:
        """A thread has none."""
        return None

    def ready(self, health: ServiceHealth) -> bool:
        """Models loaded, read from the Worker itself."""
        return bool(self.worker.info.ready)


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

    @property
    def exit_code(self) -> int | None:
        """The child's exit code once it ended."""
        return self.process.exitcode

    def ready(self, health: ServiceHealth) -> bool:
        """Models loaded, as the child's own registration says."""
        return any(w.id == self.worker_id and w.alive and w.ready for w in health.workers)

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
