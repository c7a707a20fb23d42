"""A worker process exactly as `artgen worker` runs it (run_worker on ARTGEN_* settings), with a
machine-readable log and a record of every os.fork() in the process (there must be none).

usage: python3 worker_main.py FORK_LOG
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys


def main(argv: list[str]) -> int:
    """Serve the queue named by ARTGEN_QUEUE_URL until SIGTERM."""
    fork_log = argv[0]

    def note_fork() -> None:
        with open(fork_log, "a") as file:
            file.write(f"fork in worker pid {os.getpid()}\n")

    os.register_at_fork(before=note_fork)
    # Epoch seconds in each line: the tests compare start and end times across processes.
    logging.basicConfig(
        level=logging.INFO, format="%(created).3f %(name)s %(message)s", stream=sys.stderr
    )
    import torch

    torch.set_num_threads(1)
    from artgen.config import Settings
    from artgen.jobs.hosting import run_worker

    code = run_worker(Settings())
    print(f"start method after run_worker: {multiprocessing.get_start_method()}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
