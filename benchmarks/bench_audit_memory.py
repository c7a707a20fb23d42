"""The API's memory while its audit reads a queue of jobs with big uploads (issue 12, item 7).

An API-side JobService (no worker) gets 25 jobs with a 9.7 MB init image each, then runs the
collector's audit 5 times; prints the process's resident and peak memory and the time per audit.

    python3 benchmarks/bench_audit_memory.py [--jobs 25] [--upload-mb 9.7] [--audits 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def memory_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--upload-mb", type=float, default=9.7)
    parser.add_argument("--audits", type=int, default=5)
    args = parser.parse_args()

    from artgen.config import Settings
    from artgen.jobs.schemas import JobCreate
    from artgen.jobs.service import JobService

    with tempfile.TemporaryDirectory(prefix="artgen-audit-") as directory:
        settings = Settings(
            data_dir=Path(directory) / "data", home=Path(directory) / "home", model="tiny",
            device="cpu", worker=False, queue_limit=max(100, args.jobs),
        )  # fmt: skip
        service = JobService.from_settings(settings)
        upload = os.urandom(int(args.upload_mb * 1e6))
        request = JobCreate(prompts="a castle", width=32, height=32, iterations=5)
        for seed in range(args.jobs):
            service.submit(request.model_copy(update={"seed": seed}), init_image=upload)
        del upload
        resident, peak = memory_mib("VmRSS"), memory_mib("VmHWM")
        start = time.perf_counter()
        for _ in range(args.audits):
            service.collector._audit(grace=0.0)  # every queued job is looked at
        per_audit = (time.perf_counter() - start) / args.audits
        print(
            f"{args.jobs} queued jobs with {args.upload_mb:g} MB uploads, {args.audits} audits: "
            f"RSS {resident:.0f} -> {memory_mib('VmRSS'):.0f} MiB, peak {peak:.0f} -> "
            f"{memory_mib('VmHWM'):.0f} MiB, {per_audit * 1000:.0f} ms per audit"
        )
        service.close()


if __name__ == "__main__":
    main()
