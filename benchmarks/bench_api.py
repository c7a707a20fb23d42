"""The API end to end: POST /v1/jobs to the final image through the real app and embedded worker.

    python3 benchmarks/bench_api.py --model tiny --device cpu --size 32 --iterations 5
    python3 benchmarks/bench_api.py --model random-f16 --device cuda --size 512 --iterations 100

Prints the timings and writes JSON to benchmarks/results/<device>-<UTC time>-api.json. The
helpers (service_settings, post_job, wait_jobs, wait_service_ready) serve bench_batching.py too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from fastapi.testclient import TestClient

from artgen.api.app import create_app
from artgen.bench import device_label, device_name, write_json
from artgen.config import Settings
from artgen.models.presets import RANDOM_CLIP, RANDOM_VQGAN, TINY

RESULTS = Path(__file__).resolve().parent / "results"


def service_settings(data_dir: Path, model: str, device: str, **overrides: Any) -> Settings:
    """Settings for an in-process service on the random "random-f16" or "tiny" models."""
    vqgan, clip_model = (TINY, TINY) if model == "tiny" else (RANDOM_VQGAN, RANDOM_CLIP)
    return Settings(
        data_dir=data_dir, model=vqgan, clip_model=clip_model, device=device, **overrides
    )


def wait_service_ready(client: TestClient, timeout: float = 120.0) -> float:
    """Poll /readyz until the embedded worker has its models; the seconds it took."""
    start = time.perf_counter()
    while client.get("/readyz").status_code != 200:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"/readyz not ready after {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - start


def post_job(client: TestClient, body: dict[str, Any]) -> str:
    """POST /v1/jobs; the new job's id (raises unless 202)."""
    answer = client.post("/v1/jobs", json=body)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs: {answer.status_code} {answer.text[:300]}")
    return str(answer.json()["id"])


def wait_jobs(
    client: TestClient, ids: list[str], timeout: float, poll: float = 0.02
) -> list[dict[str, Any]]:
    """Poll until every job succeeded (raise on failure or timeout); the jobs' JSON in order."""
    begin = time.perf_counter()
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        for job_id in ids:
            if job_id in done:
                continue
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] == "succeeded":
                done[job_id] = job
            elif job["status"] in ("failed", "canceled"):
                raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
        if len(done) == len(ids):
            break
        if time.perf_counter() - begin > timeout:
            raise TimeoutError(f"{len(ids) - len(done)} jobs not done after {timeout:.0f} s")
        time.sleep(poll)
    return [done[job_id] for job_id in ids]


def api_end_to_end(
    data_dir: Path,
    model: str,
    device: str,
    size: int = 512,
    iterations: int = 100,
    cutn: int = 64,
    ready_timeout: float = 120.0,
    job_timeout: float = 300.0,
) -> dict[str, Any]:
    """POST /v1/jobs to final image through the real app and embedded worker, models resident.

    A short warm-up job runs first so that the timed job sees loaded models and warm kernels.
    """
    settings = service_settings(data_dir, model, device, worker=True)
    result: dict[str, Any] = {"size": size, "iterations": iterations, "cutn": cutn}
    with TestClient(create_app(settings)) as client:
        result["ready_seconds"] = wait_service_ready(client, ready_timeout)

        def one_job(job_iterations: int) -> float:
            body = {
                "prompts": "a castle in the clouds",
                "width": size,
                "height": size,
                "iterations": job_iterations,
                "cutn": cutn,
                "seed": 0,
            }
            begin = time.perf_counter()
            job_id = post_job(client, body)
            wait_jobs(client, [job_id], job_timeout, poll=0.01)
            image = client.get(f"/v1/jobs/{job_id}/image")
            if image.status_code != 200 or not image.content.startswith(b"\x89PNG"):
                raise RuntimeError(f"GET image: {image.status_code}")
            return time.perf_counter() - begin

        result["warmup_seconds"] = one_job(min(5, iterations))
        result["post_to_image_seconds"] = one_job(iterations)
    result["ms_per_iteration_including_service"] = (
        result["post_to_image_seconds"] * 1000 / iterations
    )
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "random-f16"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--cutn", type=int, default=64)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="artgen-api-") as data_dir:
        data = api_end_to_end(
            Path(data_dir), args.model, args.device, size=args.size,
            iterations=args.iterations, cutn=args.cutn,
        )  # fmt: skip
    data.update(
        device=device_label(device),
        device_name=device_name(device),
        model=args.model,
        command="python3 benchmarks/bench_api.py " + " ".join(argv),
    )
    print(f"API end to end, {args.model} models on {data['device_name']}, {args.size} px, "
          f"{args.iterations} iterations, cutn {args.cutn}")  # fmt: skip
    for key in ("ready_seconds", "warmup_seconds", "post_to_image_seconds"):
        print(f"  {key:<36} {data[key]:>9.2f} s")
    print(f"  {'ms_per_iteration_including_service':<36} "
          f"{data['ms_per_iteration_including_service']:>9.1f} ms")  # fmt: skip
    print(f"wrote {write_json(data, args.output_dir, data['device'], 'api')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
