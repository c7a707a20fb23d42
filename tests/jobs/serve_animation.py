"""A stand-in for `artgen serve` used by the animation crash test: JobService + embedded worker.

usage: python3 serve_animation.py DATA_DIR HOME [--submit FRAMES]
Prints the id of the submitted animation, then serves until no job is queued or running.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch

from artgen.config import Settings
from artgen.jobs.hosting import start_embedded_worker
from artgen.jobs.schemas import JobCreate
from artgen.jobs.service import JobService


def main(argv: list[str]) -> int:
    """Serve jobs on the data dir until none is active."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.set_num_threads(1)
    settings = Settings(
        data_dir=Path(argv[0]),
        home=Path(argv[1]),
        model="tiny",
        device="cpu",
        # Far apart: only the frame boundaries' checkpoints count for the test.
        checkpoint_every=1000,
        lease_seconds=5.0,
    )
    service = JobService.from_settings(settings)
    service.start()
    if "--submit" in argv:
        request = JobCreate.model_validate(
            {
                "kind": "animation",
                "prompt": "a lighthouse",
                "width": 32,
                "height": 32,
                "iterations": 2,
                "iterations_per_frame": 2,
                "frames": int(argv[argv.index("--submit") + 1]),
                "fps": 8,
                "zoom": "0:(1.05)",
                "cutn": 2,
                "augment": False,
                "seed": 3,
            }
        )
        job, _ = service.submit(request)
        print(job.id, flush=True)
    worker = start_embedded_worker(settings, service.queue)
    while service.store.count_active() > 0:
        time.sleep(0.1)
    worker.stop()
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
