"""Helpers for the scale-out tests: a private redis-server, worker processes, their logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artgen.jobs.schemas import Job, JobCreate
from support import wait_for

HERE = Path(__file__).parent
# A job line of a worker log (worker_main.py's format): "<epoch> artgen.jobs.worker job <id> ..."
JOB_LINE = re.compile(
    r"^(?P<time>\d+\.\d+) artgen\.jobs\.worker job (?P<job>\S+) attempt (?P<attempt>\d+) "
    r"(?P<what>started|ended)(?:: (?P<status>\w+))?"
)


def tiny_request(**overrides: Any) -> JobCreate:
    """A job small enough for CPU tests (tiny model, 32x32, 4 cutouts)."""
    fields: dict[str, Any] = {
        "prompts": "a lighthouse in fog",
        "width": 32,
        "height": 32,
        "iterations": 20,
        "cutn": 4,
        "augment": False,
        "seed": 5,
        "preview_every": 5,
    }
    fields.update(overrides)
    return JobCreate(**fields)


@dataclass
class JobRun:
    """One attempt of a job as a worker log tells it."""

    job_id: str
    attempt: int
    started: float
    ended: float | None
    status: str | None


class WorkerProcess:
    """A worker process (worker_main.py or `python3 -m artgen worker`) and its log."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The process id (part of the worker id: host-pid-random)."""
        return self.popen.pid

    def owns(self, worker_id: str | None) -> bool:
        """Whether a worker id is this process's."""
        return worker_id is not None and f"-{self.pid}-" in worker_id

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def runs(self) -> list[JobRun]:
        """Job attempts this worker started, with their end (if logged), in order."""
        runs: list[JobRun] = []
        for line in self.log().splitlines():
            match = JOB_LINE.match(line)
            if match is None:
                continue
            job, attempt, at = match["job"], int(match["attempt"]), float(match["time"])
            if match["what"] == "started":
                runs.append(JobRun(job, attempt, at, None, None))
                continue
            for run in runs:
                if (run.job_id, run.attempt) == (job, attempt) and run.ended is None:
                    run.ended, run.status = at, match["status"]
        return runs

    def signal(self, signum: int) -> None:
        """Send a signal (SIGKILL, SIGSTOP, SIGCONT, SIGTERM)."""
        os.kill(self.pid, signum)

    def stop(self) -> None:
        """Kill the process if still running and close its log."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.kill()
            self.popen.wait(10)
        self._log.close()


def worker_env(queue_url: str, home: Path, *, model: str = "tiny", **settings: Any) -> dict:
    """A worker's environment: ARTGEN_* settings, one thread, this interpreter's path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARTGEN_")}
    env.update(
        PYTHONPATH=os.pathsep.join(sys.path),
        OMP_NUM_THREADS="1",
        ARTGEN_QUEUE_URL=queue_url,
        ARTGEN_MODEL=model,
        ARTGEN_DEVICE="cpu",
        ARTGEN_HOME=str(home),
    )
    env.update({f"ARTGEN_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def job_with(get: Callable[[], Job | None], condition: Callable[[Job], bool]) -> Job | None:
    """The job if it exists and meets the condition (for wait_for)."""
    job = get()
    return job if job is not None and condition(job) else None


def fork_log(directory: Path, index: int) -> Path:
    """Where worker `index` records forks (absent when it never forked)."""
    return directory / f"worker-{index}.forks"


def spawn_worker(
    directory: Path,
    index: int,
    queue_url: str,
    home: Path,
    *,
    cli: bool = False,
    model: str = "tiny",
) -> WorkerProcess:
    """Start worker `index`: worker_main.py, or `python3 -m artgen worker` itself with cli=True.

    Lease and checkpoint interval match the Cluster's API side (2 s, every 4 iterations).
    """
    env = worker_env(queue_url, home, model=model, checkpoint_every=4, lease_seconds=2.0)
    if cli:
        args = [sys.executable, "-m", "artgen", "worker", "--queue", queue_url]
        args += ["--device", "cpu", "--model", model]
    else:
        args = [sys.executable, str(HERE / "worker_main.py"), str(fork_log(directory, index))]
    return WorkerProcess(args, env, directory / f"worker-{index}.log")


class Cluster:
    """An API-side JobService (no worker in it) and the worker processes serving its queue."""

    def __init__(self, directory: Path, queue_url: str) -> None:
        from artgen.config import Settings
        from artgen.jobs.service import JobService

        self.directory = directory
        self.queue_url = queue_url
        self.home = directory / "home"  # empty: only the tiny models need no files
        self.settings = Settings(
            queue_url=queue_url,
            data_dir=directory / "data",
            home=self.home,
            model="tiny",
            device="cpu",
            worker=False,
            checkpoint_every=4,
            lease_seconds=2.0,
            max_attempts=3,
        )
        self.service = JobService.from_settings(self.settings)
        self.service.start()
        self.workers: list[WorkerProcess] = []

    def spawn(self, *, cli: bool = False, model: str = "tiny") -> WorkerProcess:
        """Start a worker process on the queue: worker_main.py, or `python3 -m artgen worker`."""
        worker = spawn_worker(
            self.directory, len(self.workers), self.queue_url, self.home, cli=cli, model=model
        )
        self.workers.append(worker)
        return worker

    def fork_log(self, index: int) -> Path:
        """Where worker `index` records forks (absent when it never forked)."""
        return fork_log(self.directory, index)

    def health_of(self, worker: WorkerProcess) -> Any:
        """The worker's entry in the service's health, or None."""
        for info in self.service.health().workers:
            if worker.owns(info.id):
                return info
        return None

    def ready(self, *workers: WorkerProcess, timeout: float = 60.0) -> None:
        """Wait until the workers are alive with their models loaded."""

        def all_ready() -> bool:
            for worker in workers:
                if worker.popen.poll() is not None:
                    raise AssertionError(f"worker exited early:\n{worker.log()}")
                info = self.health_of(worker)
                if info is None or not (info.alive and info.ready):
                    return False
            return True

        wait_for(all_ready, timeout, 0.2)

    def job(self, job_id: str) -> Job:
        """The job's record (it must exist)."""
        job = self.service.get(job_id)
        assert job is not None, job_id
        return job

    def close(self) -> None:
        """Kill every worker, stop the service, drop the queue's keys."""
        for worker in self.workers:
            worker.stop()
        self.service.close()


def stored_keys(queue: Any, job_id: str) -> list[str]:
    """Every key the queue's Redis hash holds for the job (any kind)."""
    storage = queue.huey.storage
    return sorted(
        key.decode() for key in storage.conn.hkeys(storage.result_key) if job_id in key.decode()
    )
