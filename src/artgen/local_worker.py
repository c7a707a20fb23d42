"""The body of `artgen worker` (cli.py): a worker process taking jobs from the queue."""

from __future__ import annotations

import logging

from artgen.config import Settings
from artgen.jobs import hosting
from artgen.local_common import resolve_device


def run(settings: Settings, device: str | None) -> int:
    """Check `--device` when given, log to stderr and run the worker; its exit code."""
    if device is not None:
        resolve_device(device)
    # A worker is a long-running process: its log is how an operator sees jobs come and go.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return hosting.run_worker(settings)
