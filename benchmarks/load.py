"""Load benchmark of a real `artgen serve --model tiny`: pollers + SSE, queue pressure, soak.

Run: python3 benchmarks/load.py [--pollers 100 --sse 50 --soak 200]
Prints a table and writes benchmarks/results/load-<UTC time>.json. The reliability tests import
this module and run the same scenarios at a smaller size (tests/reliability/test_load.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

RESULTS_DIR = Path(__file__).resolve().parent / "results"
READY_TIMEOUT_S = 120.0
TERMINAL = {"succeeded", "failed", "canceled"}
# Polls sent in the first second of the load are the opening burst, reported apart.
BURST_SECONDS = 1.0
# Files a job that succeeded without init image or video leaves in its directory.
FINISHED_JOB_FILES = {"final.png", "preview.png"}
DATABASE_FILES = {"jobs.sqlite3", "queue.sqlite3"}
# SQLite's WAL-mode side files may exist next to each database.
SQLITE_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_body(iterations: int, **overrides: Any) -> dict[str, Any]:
    """A tiny-model job: 32x32, 4 cutouts, previews every 5 iterations."""
    body: dict[str, Any] = {
        "prompts": "a lighthouse in a storm:1 | blurry:-0.5",
        "width": 32,
        "height": 32,
        "iterations": iterations,
        "cutn": 4,
        "augment": False,
        "seed": 7,
        "preview_every": 5,
    }
    body.update(overrides)
    return body


@dataclass
class ServerProcess:
    """`artgen serve --model tiny` as a subprocess on a loopback port, one torch thread."""

    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    # `serve --worker-process`: the embedded worker in a child process instead of a thread.
    worker_process: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (the Python process itself, no wrapper)."""
        assert self.process is not None
        return self.process.pid

    def start(self, wait: bool = True) -> None:
        """Start the server (same port and data dir on every restart); wait for /readyz."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.update({"PYTHONUNBUFFERED": "1", "ARTGEN_HOME": str(self.data_dir.parent / "home")})
        env.update(self.env)
        command = [sys.executable, "-c", "from artgen.cli import app; app()", "serve"]
        command += ["--model", "tiny", "--device", "cpu", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        command += ["--worker-process"] if self.worker_process else []
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll /readyz until 200; RuntimeError with the log tail if the server dies or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no checkpoint, no cleanup."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (graceful drain), SIGKILL if it does not exit within 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextmanager
def running_server(
    workdir: Path, env: dict[str, str] | None = None, worker_process: bool = False
) -> Iterator[ServerProcess]:
    """A started server under workdir; always stopped on exit."""
    server = ServerProcess(
        workdir / "data", workdir / "server.log", env=dict(env or {}), worker_process=worker_process
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


# One job, measured


def submit(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/jobs; the job JSON (raises on anything but 202)."""
    response = httpx.post(f"{base_url}/v1/jobs", json=body, timeout=30)
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return response.json()


def wait_job(base_url: str, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    """Poll the job every 50 ms until it is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base_url}/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not finished in {timeout:.0f} s: {job}")
        time.sleep(0.05)


def iteration_rate(job: dict[str, Any]) -> float:
    """Iterations per second of a finished job, from its started_at/finished_at."""
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return job["iterations"] / max((finished - started).total_seconds(), 1e-9)


def baseline_rate(base_url: str, iterations: int) -> float:
    """Iterations/s of one job with nothing else going on."""
    job = wait_job(base_url, submit(base_url, job_body(iterations))["id"])
    if job["status"] != "succeeded":
        raise RuntimeError(f"baseline job did not succeed: {job}")
    return iteration_rate(job)


# Pollers and SSE subscribers while a job runs


@dataclass
class LoadStats:
    """What the clients saw while the job ran."""

    latencies: list[float] = field(default_factory=list)
    # (seconds since the load started, latency) of every answered poll.
    samples: list[tuple[float, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    # 404 from the seed's progress image before the first preview exists: documented, not a failure.
    expected_404: int = 0
    streams: list[list[tuple[int, str, str]]] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the values fall (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class RawConnection:
    """One keep-alive HTTP/1.1 connection, a few dozen lines: an httpx request costs about a
    millisecond of client CPU, which on a 2-core machine made the load generator, not the server,
    what saturated first."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        address = base_url.removeprefix("http://")
        host, _, port = address.partition(":")
        self.host, self.port, self.timeout = host, int(port or 80), timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str) -> tuple[int, bytes]:
        """(status, body) of one request without a body; reconnects when the server closed."""
        return await asyncio.wait_for(self._request(method, path), self.timeout)

    async def _request(self, method: str, path: str) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: 0\r\n\r\n"
        self.writer.write(head.encode("ascii"))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        """Close the socket."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


async def _poller(
    base_url: str, job_id: str, stats: LoadStats, interval: float, stop: asyncio.Event
) -> None:
    """GET the job, the seed's progress bar and progress image in turn until the job ends."""
    requests = [
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/generate_text2img_progressbar?job_id={job_id}"),
        ("POST", f"/v1/generate_text2img_progressimg?job_id={job_id}"),
    ]
    connection = RawConnection(base_url)
    turn = 0
    try:
        while not stop.is_set():
            method, url = requests[turn % len(requests)]
            turn += 1
            started = time.perf_counter()
            try:
                status, body = await connection.request(method, url)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                stats.failures.append(f"{method} {url}: {type(exc).__name__}: {exc}")
                await connection.close()
                continue
            stats.latencies.append(time.perf_counter() - started)
            stats.samples.append((started - stats.started, stats.latencies[-1]))
            stats.requests += 1
            if status == 404 and "progressimg" in url:
                stats.expected_404 += 1
            elif status != 200:
                stats.failures.append(f"{method} {url}: {status} {body[:200]!r}")
            elif method == "GET" and json.loads(body)["status"] in TERMINAL:
                stop.set()
            if interval > 0:
                await asyncio.sleep(interval)
    finally:
        await connection.close()


async def _subscriber(client: httpx.AsyncClient, job_id: str, stats: LoadStats) -> None:
    """Follow the job's SSE stream from the start until `done`; record (id, event, data)."""
    events: list[tuple[int, str, str]] = []
    current: dict[str, str] = {}
    try:
        async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            if response.status_code != 200:
                stats.failures.append(f"SSE: {response.status_code}")
                return
            async for line in response.aiter_lines():
                if line == "":
                    if "event" in current:
                        events.append((int(current["id"]), current["event"], current["data"]))
                        if current["event"] == "done":
                            break
                    current = {}
                elif not line.startswith(":") and ":" in line:
                    name, _, value = line.partition(":")
                    current[name] = value.lstrip(" ")
    except httpx.HTTPError as exc:
        stats.failures.append(f"SSE: {type(exc).__name__}: {exc}")
    stats.streams.append(events)


async def _load(
    base_url: str, job_id: str, pollers: int, subscribers: int, interval: float, timeout: float
) -> LoadStats:
    stats = LoadStats()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=subscribers + 8, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        tasks = [_subscriber(client, job_id, stats) for _ in range(subscribers)]
        tasks += [_poller(base_url, job_id, stats, interval, stop) for _ in range(pollers)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    return stats


def latency_buckets(base_url: str) -> dict[float, float]:
    """The server's own request-duration histogram (all handlers): upper bound -> count."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    buckets = {}
    for line in text.splitlines():
        if line.startswith("http_request_duration_highr_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile q of the requests counted in between."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0) if bounds else 0.0
    for bound in bounds:
        if total and after[bound] - before.get(bound, 0.0) >= q * total:
            return bound
    return float("nan")


def run_load(
    base_url: str,
    pollers: int,
    subscribers: int,
    iterations: int,
    interval: float = 0.25,
    timeout: float = 600.0,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Baseline rate, then the same job under pollers + SSE subscribers, then baseline again."""
    before = baseline_rate(base_url, iterations)
    job_id = submit(base_url, job_body(iterations))["id"]
    histogram_before = latency_buckets(base_url)
    client_cpu = time.process_time()
    server_cpu = _cpu_seconds(server_pid)
    child_cpu = _children_cpu_seconds(server_pid)
    started = time.monotonic()
    stats = asyncio.run(_load(base_url, job_id, pollers, subscribers, interval, timeout))
    wall = time.monotonic() - started
    client_cpu = time.process_time() - client_cpu
    server_cpu = _cpu_seconds(server_pid) - server_cpu
    child_cpu = _children_cpu_seconds(server_pid) - child_cpu
    histogram_after = latency_buckets(base_url)
    job = wait_job(base_url, job_id)
    after = baseline_rate(base_url, iterations)
    baseline = (before + after) / 2
    loaded = iteration_rate(job) if job["status"] == "succeeded" else 0.0
    streams = stats.streams
    steady = [latency for offset, latency in stats.samples if offset >= BURST_SECONDS]
    burst = [latency for offset, latency in stats.samples if offset < BURST_SECONDS]
    identical = bool(streams) and all(stream == streams[0] for stream in streams)
    ids_increase = all(
        all(a[0] < b[0] for a, b in zip(stream, stream[1:], strict=False)) for stream in streams
    )
    return {
        "pollers": pollers,
        "sse_subscribers": subscribers,
        "poll_interval_s": interval,
        "iterations": iterations,
        "job_status": job["status"],
        "requests": stats.requests,
        "failures": len(stats.failures),
        "failure_samples": stats.failures[:5],
        "expected_404_before_first_preview": stats.expected_404,
        "p50_ms": percentile(stats.latencies, 0.50) * 1000,
        "p99_ms": percentile(stats.latencies, 0.99) * 1000,
        "max_ms": max(stats.latencies, default=float("nan")) * 1000,
        # Without the opening burst (every client connects and asks at once).
        "steady_p50_ms": percentile(steady, 0.50) * 1000,
        "steady_p99_ms": percentile(steady, 0.99) * 1000,
        "burst_max_ms": max(burst, default=float("nan")) * 1000,
        # The server's own view (its request-duration histogram): bucket upper bounds.
        "server_p50_ms_at_most": bucket_quantile(histogram_before, histogram_after, 0.5) * 1000,
        "server_p99_ms_at_most": bucket_quantile(histogram_before, histogram_after, 0.99) * 1000,
        # On a small machine the load generator itself can be what saturates.
        "load_seconds": wall,
        "client_cpu_cores": client_cpu / wall,
        "server_cpu_cores": server_cpu / wall if server_pid is not None else None,
        # The worker child of `serve --worker-process` (0 with the thread worker).
        "worker_process_cpu_cores": child_cpu / wall if server_pid is not None else None,
        "baseline_it_s_before": before,
        "baseline_it_s_after": after,
        "loaded_it_s": loaded,
        "rate_drop_pct": 100.0 * (1 - loaded / baseline) if baseline else float("nan"),
        "sse_streams": len(streams),
        "sse_events_per_stream": len(streams[0]) if streams else 0,
        "sse_identical": identical,
        "sse_ids_increase": ids_increase,
        "sse_all_end_with_done": all(stream and stream[-1][1] == "done" for stream in streams),
    }


def _children_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds so far of the live child processes of a process."""
    if pid is None:
        return 0.0
    import psutil

    total = 0.0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when no pid)."""
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# Queue pressure


async def _submit_many(base_url: str, count: int, body: dict[str, Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(*[client.post("/v1/jobs", json=body) for _ in range(count)])
        )


def queue_pressure(base_url: str, queue_limit: int, submissions: int) -> dict[str, Any]:
    """Submit more jobs at once than the queue holds: the excess is 503, the accepted all finish."""
    existing = httpx.get(f"{base_url}/v1/jobs?limit=1", timeout=30).json()["total"]
    body = job_body(15, preview_every=100)
    responses = asyncio.run(_submit_many(base_url, submissions, body))
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    rejected = [r for r in responses if r.status_code == 503]
    other = [
        f"{r.status_code} {r.text[:200]}" for r in responses if r.status_code not in (202, 503)
    ]
    retry_after_ok = all(
        r.json()["error"]["code"] == "queue_full" and int(r.headers.get("Retry-After", "0")) > 0
        for r in rejected
    )
    finished = [wait_job(base_url, job_id) for job_id in accepted]
    total = httpx.get(f"{base_url}/v1/jobs?limit=1", timeout=30).json()["total"]
    return {
        "queue_limit": queue_limit,
        "submitted": submissions,
        "accepted": len(accepted),
        "rejected_503": len(rejected),
        "other_answers": other,
        "retry_after_ok": retry_after_ok,
        "accepted_succeeded": sum(job["status"] == "succeeded" for job in finished),
        "jobs_recorded": total - existing,
    }


# Soak


def process_figures(pid: int) -> tuple[int, int]:
    """(RSS bytes, open file descriptors) of a process."""
    import psutil

    process = psutil.Process(pid)
    return process.memory_info().rss, process.num_fds()


def soak(base_url: str, pid: int, data_dir: Path, jobs: int, warmup: int = 5) -> dict[str, Any]:
    """`jobs` short jobs back to back; RSS and fds after warm-up vs at the end; data dir audit."""
    body = job_body(3, cutn=2, preview_every=1)
    ids = []
    for _ in range(warmup):
        ids.append(wait_job(base_url, submit(base_url, body)["id"])["id"])
    rss_start, fds_start = process_figures(pid)
    statuses: dict[str, int] = {}
    started = time.monotonic()
    for _ in range(jobs):
        job = wait_job(base_url, submit(base_url, body)["id"])
        statuses[job["status"]] = statuses.get(job["status"], 0) + 1
        ids.append(job["id"])
    elapsed = time.monotonic() - started
    rss_end, fds_end = process_figures(pid)
    # Delete every other soak job: its directory must go with it.
    deleted = set(ids[::2])
    for job_id in deleted:
        response = httpx.delete(f"{base_url}/v1/jobs/{job_id}", timeout=30)
        if response.status_code != 204:
            raise RuntimeError(f"delete {job_id}: {response.status_code}")
    return {
        "jobs": jobs,
        "statuses": statuses,
        "seconds": elapsed,
        "jobs_per_s": jobs / elapsed,
        "rss_start_mib": rss_start / 2**20,
        "rss_end_mib": rss_end / 2**20,
        "rss_growth_mib": (rss_end - rss_start) / 2**20,
        "fds_start": fds_start,
        "fds_end": fds_end,
        "fds_growth": fds_end - fds_start,
        "deleted": len(deleted),
        "data_dir_problems": data_dir_problems(base_url, data_dir, deleted),
    }


def all_jobs(base_url: str) -> list[dict[str, Any]]:
    """Every job the server knows, through the paginated list."""
    jobs: list[dict[str, Any]] = []
    while True:
        page = httpx.get(f"{base_url}/v1/jobs?limit=100&offset={len(jobs)}", timeout=30).json()
        jobs += page["items"]
        if not page["items"] or len(jobs) >= page["total"]:
            return jobs


def data_dir_problems(base_url: str, data_dir: Path, deleted: set[str]) -> list[str]:
    """Everything under data_dir that is not exactly what the finished jobs should leave."""
    problems = []
    for path in data_dir.iterdir():
        name = path.name
        stem = next((name[: -len(s)] for s in SQLITE_SIDE_SUFFIXES if name.endswith(s)), name)
        if name != "jobs" and stem not in DATABASE_FILES:
            problems.append(f"unexpected {name}")
    jobs_dir = data_dir / "jobs"
    present = {path.name for path in jobs_dir.iterdir()}
    jobs = {job["id"]: job for job in all_jobs(base_url)}
    for job_id, job in jobs.items():
        if job["status"] not in TERMINAL:
            problems.append(f"job {job_id} is still {job['status']}")
            continue
        files = {p.name for p in (jobs_dir / job_id).iterdir()} if job_id in present else set()
        expected = FINISHED_JOB_FILES if job["status"] == "succeeded" else files - {"final.png"}
        if files != expected or any(name.endswith(".tmp") for name in files):
            problems.append(f"{job['status']} job {job_id} has {sorted(files)}")
    for name in present - set(jobs):
        problems.append(f"{'deleted' if name in deleted else 'unknown'} job dir {name} remains")
    return problems


# The benchmark


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Run the three scenarios against fresh servers; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--sse", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds between polls")
    parser.add_argument("--iterations", type=int, default=100, help="iterations of the loaded job")
    parser.add_argument("--queue-limit", type=int, default=4)
    parser.add_argument("--submissions", type=int, default=12)
    parser.add_argument("--soak", type=int, default=200)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="start the server with `--worker-process` (its worker in a child process)",
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers this run started are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "python": platform.python_version(),
        "worker_process": args.worker_process,
    }
    with tempfile.TemporaryDirectory(prefix="artgen-load-") as tmp:
        env = {"ARTGEN_QUEUE_LIMIT": str(args.queue_limit)}
        with running_server(Path(tmp), env, args.worker_process) as server:
            load = run_load(
                server.base_url,
                args.pollers,
                args.sse,
                args.iterations,
                args.poll_interval,
                server_pid=server.pid,
            )
            pressure = queue_pressure(server.base_url, args.queue_limit, args.submissions)
            soaked = soak(server.base_url, server.pid, server.data_dir, args.soak)
    results.update({"load": load, "queue_pressure": pressure, "soak": soaked})

    rows = [
        (
            "clients",
            f"{load['pollers']} pollers (every {load['poll_interval_s']} s) + "
            f"{load['sse_subscribers']} SSE",
        ),
        ("poll requests / failures", f"{load['requests']} / {load['failures']}"),
        (
            "poll latency p50 / p99 / max",
            f"{load['p50_ms']:.1f} / {load['p99_ms']:.1f} / {load['max_ms']:.1f} ms",
        ),
        (
            "  after the first 1 s: p50 / p99",
            f"{load['steady_p50_ms']:.1f} / {load['steady_p99_ms']:.1f} ms "
            f"(opening burst max {load['burst_max_ms']:.0f} ms)",
        ),
        (
            "  server-side p50 / p99 (histogram)",
            f"<= {load['server_p50_ms_at_most']:.0f} / <= {load['server_p99_ms_at_most']:.0f} ms",
        ),
        (
            "CPU cores used: clients / server / worker process",
            f"{load['client_cpu_cores']:.2f} / {load['server_cpu_cores']:.2f} / "
            f"{load['worker_process_cpu_cores']:.2f} (machine has {os.cpu_count()})",
        ),
        (
            "job it/s alone (before, after)",
            f"{load['baseline_it_s_before']:.2f}, {load['baseline_it_s_after']:.2f}",
        ),
        ("job it/s under load", f"{load['loaded_it_s']:.2f} (drop {load['rate_drop_pct']:.1f}%)"),
        (
            "SSE streams identical, ordered, done",
            f"{load['sse_identical']}, "
            f"{load['sse_ids_increase']}, "
            f"{load['sse_all_end_with_done']} "
            f"({load['sse_events_per_stream']} events)",
        ),
        (
            "queue: submitted / accepted / 503",
            f"{pressure['submitted']} / {pressure['accepted']} / "
            f"{pressure['rejected_503']} (limit "
            f"{pressure['queue_limit']})",
        ),
        (
            "queue: accepted succeeded / recorded",
            f"{pressure['accepted_succeeded']} / {pressure['jobs_recorded']}",
        ),
        (
            "soak jobs (jobs/s)",
            f"{soaked['jobs']} ({soaked['jobs_per_s']:.1f}/s) {soaked['statuses']}",
        ),
        (
            "soak RSS",
            f"{soaked['rss_start_mib']:.1f} -> {soaked['rss_end_mib']:.1f} MiB "
            f"({soaked['rss_growth_mib']:+.1f})",
        ),
        (
            "soak open fds",
            f"{soaked['fds_start']} -> {soaked['fds_end']} ({soaked['fds_growth']:+d})",
        ),
        ("data dir problems", str(len(soaked["data_dir_problems"]))),
    ]
    print(_table(rows))
    output = args.output or RESULTS_DIR / f"load-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    ok = (
        load["failures"] == 0
        and load["sse_identical"]
        and load["sse_all_end_with_done"]
        and not pressure["other_answers"]
        and pressure["accepted_succeeded"] == pressure["accepted"] == pressure["jobs_recorded"]
        and not soaked["data_dir_problems"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
