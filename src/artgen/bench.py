"""Engine benchmark: ms/iteration, iterations/s and peak memory, reference path vs fast path.

Real architecture shapes (f16 16384 VQGAN, ViT-B-32) with random weights, or the tiny models,
so it runs anywhere without downloads. The CLI (`artgen bench`) and benchmarks/bench_engine.py
both call `run_benchmark`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import platform
import re
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from artgen.engine.options import EngineOptions

# "compiled": the fast path with torch.compile (the engine falls back to eager if it fails);
# "cudagraphs": the same in torch.compile's "reduce-overhead" mode (CUDA graphs).
PATHS = ("reference", "fast", "compiled", "cudagraphs")
COMPILE_MODES: dict[str, bool | str] = {"compiled": True, "cudagraphs": "reduce-overhead"}


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    device: torch.device
    model: str = "real"  # "real": random-weight f16 16384 VQGAN + ViT-B-32; "tiny": the tiny models
    sizes: tuple[int, ...] = (64,)
    cutn: int = 8
    iterations: int = 10  # timed steps per case, after the warm-up
    warmup: int = 2  # untimed steps first (allocator, autotuning, lazy init)
    paths: tuple[str, ...] = ("reference", "fast")
    batch_jobs: int = 0  # > 0: also step this many jobs together (engine batch mode)
    batch_size: int = 256
    prompt: str = "a castle in the clouds:1 | fog:-0.5"


@dataclass
class CaseResult:
    """One measured case."""

    path: str  # "reference", "fast", or "batch" (several jobs stepped together, fast path)
    size: int
    cutn: int
    jobs: int
    iterations: int
    ms_per_iteration: float | None = None  # wall time of one step of all `jobs`
    iterations_per_second: float | None = None  # job-iterations per second, all jobs together
    peak_memory_bytes: int | None = None
    peak_reserved_bytes: int | None = None  # CUDA: what the caching allocator held (nvidia-smi)
    error: str | None = None
    note: str | None = None  # e.g. the engine's warning that torch.compile fell back to eager


@dataclass
class BenchResult:
    """Everything a run records (written as JSON)."""

    device: str
    device_name: str
    torch_version: str
    memory_measure: str
    config: dict[str, Any]
    environment: dict[str, Any]
    cases: list[CaseResult] = field(default_factory=list)

    def speedups(self) -> list[dict[str, Any]]:
        """Per size: each path's ms/iteration and reference/fast (how many times faster)."""
        rows = []
        for size in sorted({case.size for case in self.cases if case.jobs == 1}):
            by_path = {
                case.path: case.ms_per_iteration
                for case in self.cases
                if case.size == size and case.jobs == 1 and case.ms_per_iteration is not None
            }
            if "reference" not in by_path or len(by_path) < 2:
                continue
            row: dict[str, Any] = {"size": size}
            for path, ms in by_path.items():
                row[f"{path}_ms"] = ms
            for path, ms in by_path.items():
                if path != "reference":
                    row["speedup" if path == "fast" else f"{path}_speedup"] = (
                        by_path["reference"] / ms
                    )
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (cases plus the derived speedups)."""
        data = asdict(self)
        data["speedups"] = self.speedups()
        return data


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    """Human name: the GPU's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def device_label(device: torch.device) -> str:
    """File-name label: 'cpu' or the GPU name in lowercase-dashes ('nvidia-h100-80gb-hbm3')."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak-memory window (CUDA only; RSS peaks cannot be reset)."""
    if device.type == "cuda":
        gc.collect()  # the previous case's tensors, if a reference cycle still holds them
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """CUDA: max allocated since the last reset. CPU: the process's peak RSS so far."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def peak_reserved(device: torch.device) -> int | None:
    """CUDA: max bytes the caching allocator reserved since the last reset; None on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_reserved(device))
    return None


def memory_measure(device: torch.device) -> str:
    """What `peak_memory_bytes` means on this device."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated per case (weights included)"
    return "process peak RSS so far (ru_maxrss), a high-water mark across cases"


def build_models(model: str, device: torch.device) -> Any:
    """The Models bundle to benchmark: "real" shapes with random weights, or "tiny"."""
    from artgen.models.loading import random_models

    return random_models(model, device)


def use_case_layout(models: Any, device: torch.device, fast: bool) -> None:
    """Set the VQGAN weight layout of a case: plain for the reference, as loaded for the fast path.

    The reference stays the plain fp32 algorithm; the fast path gets channels_last on CUDA, where
    load_models puts it. The bundle is shared, so each case sets the layout it wants.
    """
    from artgen.models.loading import use_layout

    use_layout(models, channels_last=fast and device.type == "cuda")


# A note keeps each distinct warning's first line, up to these many characters each and in all.
NOTE_LINE_CHARACTERS = 300
NOTE_CHARACTERS = 1000


def warning_note(caught: list[warnings.WarningMessage]) -> str | None:
    """Every distinct warning's first line, joined by " | "; torch.compile's (a fallback) first."""
    lines: list[str] = []
    for warning in caught:
        text = str(warning.message).strip() or type(warning.message).__name__
        line = text.splitlines()[0][:NOTE_LINE_CHARACTERS]
        if line not in lines:
            lines.append(line)
    # A compile that fell back to eager measured the eager path: that must never be cut off.
    lines.sort(key=lambda line: "torch.compile" not in line)
    note = " | ".join(lines)
    if len(note) > NOTE_CHARACTERS:
        note = note[: NOTE_CHARACTERS - 3] + "..."
    return note or None


def bench_params(config: BenchConfig, size: int, seed: int) -> Any:
    """GenerationParams for one timed case (enough iterations for warm-up + timed steps)."""
    from artgen.engine.params import GenerationParams

    return GenerationParams(
        prompts=config.prompt,
        width=size,
        height=size,
        iterations=config.warmup + config.iterations + 1,
        seed=seed,
        cutn=config.cutn,
    )


def time_steps(step: Callable[[], Any], config: BenchConfig) -> float:
    """Warm up, then time `config.iterations` calls of `step`; returns ms per call."""
    for _ in range(config.warmup):
        step()
    synchronize(config.device)
    reset_peak_memory(config.device)
    start = time.perf_counter()
    for _ in range(config.iterations):
        step()
    synchronize(config.device)
    return (time.perf_counter() - start) * 1000 / config.iterations


def measure_single(models: Any, config: BenchConfig, path: str, size: int) -> CaseResult:
    """One job on the reference or fast path."""
    from artgen.engine.generate import Generation

    case = CaseResult(path=path, size=size, cutn=config.cutn, jobs=1, iterations=config.iterations)
    use_case_layout(models, config.device, fast=path != "reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generation = Generation(
            models,
            bench_params(config, size, seed=0),
            device=config.device,
            options=EngineOptions(fast=path != "reference", compile=COMPILE_MODES.get(path, False)),
        )
        case.ms_per_iteration = time_steps(generation.step, config)
    case.iterations_per_second = 1000 / case.ms_per_iteration
    case.peak_memory_bytes = peak_memory(config.device)
    case.peak_reserved_bytes = peak_reserved(config.device)
    case.note = warning_note(caught)
    return case


def measure_batch(models: Any, config: BenchConfig) -> CaseResult:
    """`batch_jobs` jobs of the same size stepped together by the engine's batch mode."""
    if importlib.util.find_spec("artgen.engine.batch") is None:
        raise NotImplementedError("the engine has no batch mode (no artgen.engine.batch)")
    from artgen.engine.batch import BatchGeneration
    from artgen.engine.generate import Generation

    jobs = config.batch_jobs
    case = CaseResult(
        path="batch", size=config.batch_size, cutn=config.cutn, jobs=jobs,
        iterations=config.iterations,
    )  # fmt: skip
    use_case_layout(models, config.device, fast=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generations = [
            Generation(
                models,
                bench_params(config, config.batch_size, seed=index),
                device=config.device,
                options=EngineOptions(fast=True),
            )
            for index in range(jobs)
        ]
        batch = BatchGeneration(models, generations, device=config.device)
        case.ms_per_iteration = time_steps(batch.step, config)
    case.iterations_per_second = jobs * 1000 / case.ms_per_iteration
    case.peak_memory_bytes = peak_memory(config.device)
    case.peak_reserved_bytes = peak_reserved(config.device)
    case.note = warning_note(caught)
    return case


def guarded(measure: Callable[[], CaseResult], fallback: CaseResult) -> CaseResult:
    """Run one case; an error (out of memory, a missing feature) is recorded, not fatal."""
    try:
        return measure()
    except NotImplementedError as error:
        fallback.error = str(error)
        return fallback
    except Exception as error:  # one failed case (out of memory, say) must not lose the rest
        traceback.print_exc(file=sys.stderr)
        fallback.error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        return fallback


def environment() -> dict[str, Any]:
    """Software and machine facts worth keeping next to the figures."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        # Other work on the machine slows CPU figures down; the load average records it.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_benchmark(
    config: BenchConfig,
    report: Callable[[CaseResult], None] | None = None,
    models: Any | None = None,
) -> BenchResult:
    """Measure every (path, size) case, then the batch case; `report` sees each as it ends.

    `models` (a loaded Models bundle) skips building them again when several runs share them.
    """
    unknown = [path for path in config.paths if path not in PATHS]
    if unknown:
        raise ValueError(f"unknown path {unknown[0]!r}; choose from {', '.join(PATHS)}")
    config_json = {
        key: (str(value) if isinstance(value, torch.device) else value)
        for key, value in asdict(config).items()
    }
    result = BenchResult(
        device=device_label(config.device),
        device_name=device_name(config.device),
        torch_version=torch.__version__,
        memory_measure=memory_measure(config.device),
        config=config_json,
        environment=environment(),
    )
    if models is None:
        models = build_models(config.model, config.device)
    result.environment["models"] = {"vqgan": models.vqgan_name, "clip": models.clip_names}
    for size in config.sizes:
        for path in config.paths:
            case = guarded(
                lambda path=path, size=size: measure_single(models, config, path, size),
                CaseResult(path, size, config.cutn, 1, config.iterations),
            )
            result.cases.append(case)
            if report is not None:
                report(case)
    if config.batch_jobs > 0:
        case = guarded(
            lambda: measure_batch(models, config),
            CaseResult("batch", config.batch_size, config.cutn, config.batch_jobs, 0),
        )
        result.cases.append(case)
        if report is not None:
            report(case)
    return result


def format_bytes(count: int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} GiB"


def render_table(result: BenchResult) -> Any:
    """A rich Table: one row per case, with the reference/fast speedup on each fast row."""
    from rich.table import Table

    table = Table(
        title=f"artgen engine, {result.device_name} (torch {result.torch_version}, "
        f"{result.config['model']} models)"
    )
    for column in ("path", "size", "cutn", "jobs", "ms/it", "it/s", "peak memory", "speedup"):
        table.add_column(column, justify="left" if column == "path" else "right")
    reference_ms = {
        case.size: case.ms_per_iteration
        for case in result.cases
        if case.path == "reference" and case.jobs == 1 and case.ms_per_iteration is not None
    }
    errors = []
    for case in result.cases:
        cells = [case.path, str(case.size), str(case.cutn), str(case.jobs)]
        if case.error is not None:
            errors.append(f"{case.path} {case.size}px x{case.jobs}: {case.error}")
            table.add_row(*cells, f"error {len(errors)}", "-", "-", "")
            continue
        ratio = None
        if case.path != "reference" and case.jobs == 1 and case.size in reference_ms:
            ratio = reference_ms[case.size] / case.ms_per_iteration
        table.add_row(
            *cells,
            f"{case.ms_per_iteration:.2f}"
            if case.ms_per_iteration < 10
            else f"{case.ms_per_iteration:.1f}",
            f"{case.iterations_per_second:.2f}",
            format_bytes(case.peak_memory_bytes),
            f"{ratio:.2f}x" if ratio is not None else "",
        )
    notes = [f"speedup: reference ms/it / this ms/it; peak memory: {result.memory_measure}"]
    notes += [f"error {index}: {text}" for index, text in enumerate(errors, start=1)]
    notes += [f"{case.path} {case.size}px: {case.note}" for case in result.cases if case.note]
    table.caption = "\n".join(notes)
    return table


def write_json(data: dict[str, Any], directory: Path, device: str, tag: str | None = None) -> Path:
    """Write <directory>/<device>-<UTC timestamp>[-tag].json and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / (f"{device}-{stamp}" + (f"-{tag}" if tag else "") + ".json")
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_result(result: BenchResult, directory: Path, tag: str | None = None) -> Path:
    """Write a benchmark result as JSON under `directory`; returns the file."""
    return write_json(result.to_json(), directory, result.device, tag)


# Fast (fp32) vs reference z gradients: the tiny models give a mean cosine of about 0.988 at
# 32 px, cutn 16, and a broken augmentation (a flip, rotation or shift the wrong way) 0.59-0.79.
GRADIENT_COSINE = 0.98
GRADIENT_DIFFERENCE = 0.3


def psnr(first: Any, second: Any) -> float:
    """PSNR in dB between two same-size RGB PIL images (inf when identical)."""
    import numpy as np

    a = np.asarray(first.convert("RGB"), dtype=np.float64)
    b = np.asarray(second.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def loss_trajectory(models: Any, params: Any, device: torch.device, fast: bool) -> tuple:
    """(losses of every step, final image) of one run on the given path."""
    from artgen.engine.generate import Generation
    from artgen.engine.stepping import run

    use_case_layout(models, device, fast)
    generation = Generation(models, params, device=device, options=EngineOptions(fast=fast))
    losses: list[float] = []
    final = run(generation, lambda info: losses.append(info.loss()))
    return losses, final


AGREEMENT_PROMPT = "a castle in the clouds:1 | fog:-0.5"


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """fp32 matmuls and convolutions without TF32 on CUDA (the default lets cuDNN use TF32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def z_gradient(
    models: Any, params: Any, device: torch.device, fast: bool, bf16: bool | None
) -> torch.Tensor:
    """dLoss/dz (flattened, float64 on the CPU) of the first step of a generation."""
    from artgen.engine.generate import Generation

    use_case_layout(models, device, fast)
    generation = Generation(
        models, params, device=device, options=EngineOptions(fast=fast, bf16=bf16)
    )
    generation.loss().backward()
    return generation.z.grad.detach().flatten().double().cpu()


def cosine(first: torch.Tensor, second: torch.Tensor) -> float:
    """Cosine similarity of two flat tensors."""
    return float(torch.nn.functional.cosine_similarity(first, second, dim=0))


def gradient_agreement(
    models: Any, device: torch.device, size: int = 64, cutn: int = 16, draws: int = 4
) -> dict[str, Any]:
    """dLoss/dz of one step, fast path in fp32 vs reference, per seed: cosine, relative difference.

    Both paths draw the start z and their cutout parameters from the job's generator in the same
    order, so one seed gives both the same z and the same cutouts: what remains is how each path
    computes. On CUDA the default fast path (bf16) is compared too, for information.
    """
    from artgen.engine.params import GenerationParams

    cosines, differences, bf16_cosines = [], [], []
    for seed in range(draws):
        params = GenerationParams(
            prompts=AGREEMENT_PROMPT, width=size, height=size, iterations=1, seed=seed, cutn=cutn
        )
        with strict_fp32():
            reference = z_gradient(models, params, device, fast=False, bf16=None)
            fast = z_gradient(models, params, device, fast=True, bf16=False)
        cosines.append(cosine(fast, reference))
        differences.append(float((fast - reference).norm() / reference.norm()))
        if device.type == "cuda":
            bf16 = z_gradient(models, params, device, fast=True, bf16=True)
            bf16_cosines.append(cosine(bf16, reference))
    return {
        "z_gradient_draws": draws,
        "z_gradient_cosines": cosines,
        "z_gradient_cosine_mean": sum(cosines) / draws,
        "z_gradient_cosine_min": min(cosines),
        "z_gradient_relative_differences": differences,
        "z_gradient_relative_difference_max": max(differences),
        "z_gradient_cosine_bf16_mean": sum(bf16_cosines) / draws if bf16_cosines else None,
    }


def check_agreement(
    models: Any,
    device: torch.device,
    size: int = 64,
    cutn: int = 16,
    iterations: int = 20,
    tolerance: float = 0.05,
    gradient_cosine: float = GRADIENT_COSINE,
    gradient_difference: float = GRADIENT_DIFFERENCE,
    gradient_draws: int = 4,
) -> dict[str, Any]:
    """Run reference and fast path from the same seed; compare losses step by step and images.

    The fast path on CUDA runs in bf16, so agreement is within `tolerance` (relative), not exact.
    The losses of random-weight models barely move, so the z gradients of both paths in fp32 are
    compared too (gradient_agreement): the mean cosine must reach `gradient_cosine` and every
    relative difference stay within `gradient_difference`.
    """
    from artgen.engine.params import GenerationParams

    params = GenerationParams(
        prompts=AGREEMENT_PROMPT,
        width=size,
        height=size,
        iterations=iterations,
        seed=0,
        cutn=cutn,
    )
    reference_losses, reference_image = loss_trajectory(models, params, device, fast=False)
    fast_losses, fast_image = loss_trajectory(models, params, device, fast=True)
    relative = [
        abs(fast - reference) / max(abs(reference), 1e-8)
        for reference, fast in zip(reference_losses, fast_losses, strict=True)
    ]
    first, mean = relative[0], sum(relative) / len(relative)
    gradients = gradient_agreement(models, device, size, cutn, gradient_draws)
    gradients_ok = (
        gradients["z_gradient_cosine_mean"] >= gradient_cosine
        and gradients["z_gradient_relative_difference_max"] <= gradient_difference
    )
    return {
        "size": size,
        "cutn": cutn,
        "iterations": iterations,
        "tolerance": tolerance,
        "reference_losses": reference_losses,
        "fast_losses": fast_losses,
        "first_step_relative_difference": first,
        "mean_relative_difference": mean,
        "max_relative_difference": max(relative),
        "final_image_psnr_db": psnr(reference_image, fast_image),
        "z_gradient_cosine_threshold": gradient_cosine,
        "z_gradient_relative_difference_threshold": gradient_difference,
        **gradients,
        "ok": first <= tolerance and mean <= tolerance and gradients_ok,
    }


def service_settings(data_dir: Path, model: str, device: str, **overrides: Any) -> Any:
    """Settings for an in-process service on the random "real" or "tiny" models."""
    from artgen.config import Settings
    from artgen.models.catalog import RANDOM_CLIP, RANDOM_VQGAN, TINY

    vqgan, clip_model = (TINY, TINY) if model == "tiny" else (RANDOM_VQGAN, RANDOM_CLIP)
    return Settings(
        data_dir=data_dir, model=vqgan, clip_model=clip_model, device=device, **overrides
    )


def wait_service_ready(client: Any, timeout: float = 120.0) -> float:
    """Poll /readyz until the embedded worker has its models; the seconds it took."""
    start = time.perf_counter()
    while client.get("/readyz").status_code != 200:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"/readyz not ready after {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - start


def post_job(client: Any, body: dict[str, Any]) -> str:
    """POST /v1/jobs; the new job's id (raises unless 202)."""
    answer = client.post("/v1/jobs", json=body)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs: {answer.status_code} {answer.text[:300]}")
    return str(answer.json()["id"])


def wait_jobs(
    client: Any, ids: list[str], timeout: float, poll: float = 0.02
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
    from fastapi.testclient import TestClient

    from artgen.api.app import create_app

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


def profile_steps(
    models: Any, device: torch.device, size: int, cutn: int, steps: int = 3, top: int = 15
) -> dict[str, Any]:
    """torch.profiler over a few fast-path steps: the operators that take the time.

    Returns {"table": printable text, "operators": [{name, calls, self_ms, total_ms}, ...]}.
    """
    from torch.profiler import ProfilerActivity, profile

    from artgen.engine.generate import Generation

    config = BenchConfig(device=device, sizes=(size,), cutn=cutn, iterations=steps, warmup=3)
    use_case_layout(models, device, fast=True)
    generation = Generation(
        models, bench_params(config, size, seed=0), device=device, options=EngineOptions(fast=True)
    )
    for _ in range(config.warmup):
        generation.step()
    synchronize(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            generation.step()
        synchronize(device)
    averages = profiler.key_averages()
    # Newer torch names device time "device_time"; older releases say "cuda_time".
    on_gpu = device.type == "cuda"
    self_key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    if on_gpu and not hasattr(averages[0], self_key):
        self_key = "self_cuda_time_total"
    total_key = self_key.replace("self_", "")
    rows = sorted(averages, key=lambda event: getattr(event, self_key), reverse=True)[:top]
    operators = [
        {
            "name": event.key,
            "calls": event.count,
            "self_ms_per_step": getattr(event, self_key) / 1000 / steps,
            "total_ms_per_step": getattr(event, total_key) / 1000 / steps,
        }
        for event in rows
    ]
    return {
        "size": size,
        "cutn": cutn,
        "steps": steps,
        "sorted_by": self_key,
        "operators": operators,
        "table": averages.table(sort_by=self_key, row_limit=top),
    }
