"""Load on a real `artgen serve --model tiny` process: pollers + SSE, queue pressure, soak.

The CI-sized version of benchmarks/load.py (same code, fewer clients and jobs). Figures are
printed (run with -s); assertions are on correctness, never on timings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reltools import load_benchmark

POLLERS, SUBSCRIBERS, LOADED_ITERATIONS = 20, 10, 40
QUEUE_LIMIT, SUBMISSIONS = 4, 10
SOAK_JOBS = 20
# After warm-up the server's RSS may wobble by allocator noise, not grow per job.
MAX_SOAK_RSS_GROWTH_MIB = 32.0
MAX_SOAK_FD_GROWTH = 2


@pytest.fixture(scope="module")
def load() -> Any:
    """The benchmark module."""
    return load_benchmark()


@pytest.fixture(scope="module")
def server(load: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real server for the module, queue limit 4; stopped at the end."""
    env = {"ARTGEN_QUEUE_LIMIT": str(QUEUE_LIMIT)}
    with load.running_server(tmp_path_factory.mktemp("load"), env) as server:
        yield server


@pytest.mark.timeout(180)
def test_pollers_and_sse_subscribers_while_a_job_runs(load: Any, server: Any) -> None:
    result = load.run_load(
        server.base_url,
        POLLERS,
        SUBSCRIBERS,
        LOADED_ITERATIONS,
        timeout=120,
        server_pid=server.pid,
    )
    print(
        f"\n{POLLERS} pollers + {SUBSCRIBERS} SSE: {result['requests']} requests, "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms (server-side "
        f"<= {result['server_p50_ms_at_most']:.0f} / <= {result['server_p99_ms_at_most']:.0f} ms; "
        f"CPU cores clients {result['client_cpu_cores']:.2f}, "
        f"server {result['server_cpu_cores']:.2f}); "
        f"it/s alone {result['baseline_it_s_before']:.1f}/{result['baseline_it_s_after']:.1f}, "
        f"under load {result['loaded_it_s']:.1f} (drop {result['rate_drop_pct']:.0f}%)"
    )
    assert result["job_status"] == "succeeded"
    assert result["failures"] == 0, result["failure_samples"]
    assert result["requests"] >= POLLERS
    assert result["sse_streams"] == SUBSCRIBERS
    assert result["sse_identical"] and result["sse_ids_increase"], result
    assert result["sse_all_end_with_done"]
    # Every stream saw the job run: progress up to the last iteration, then done.
    assert result["sse_events_per_stream"] >= 4


@pytest.mark.timeout(180)
def test_queue_pressure_excess_gets_503_and_no_accepted_job_is_lost(load: Any, server: Any) -> None:
    result = load.queue_pressure(server.base_url, QUEUE_LIMIT, SUBMISSIONS)
    print(f"\nqueue pressure: {result}")
    assert not result["other_answers"], result
    assert result["rejected_503"] >= 1 and result["retry_after_ok"], result
    assert result["accepted"] + result["rejected_503"] == SUBMISSIONS
    assert QUEUE_LIMIT <= result["accepted"] < SUBMISSIONS
    assert result["accepted_succeeded"] == result["accepted"] == result["jobs_recorded"]


@pytest.mark.timeout(240)
def test_soak_keeps_memory_and_fds_flat_and_the_data_dir_exact(load: Any, server: Any) -> None:
    result = load.soak(server.base_url, server.pid, server.data_dir, SOAK_JOBS)
    print(
        f"\nsoak {SOAK_JOBS} jobs in {result['seconds']:.1f} s: RSS "
        f"{result['rss_start_mib']:.1f} -> {result['rss_end_mib']:.1f} MiB, fds "
        f"{result['fds_start']} -> {result['fds_end']}"
    )
    assert result["statuses"] == {"succeeded": SOAK_JOBS}
    assert result["data_dir_problems"] == []
    assert result["fds_growth"] <= MAX_SOAK_FD_GROWTH, result
    assert result["rss_growth_mib"] <= MAX_SOAK_RSS_GROWTH_MIB, result
