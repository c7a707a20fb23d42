"""The `artgen bench` runner: ms/iteration, iterations/s and peak memory per engine path.

Real architecture shapes (f16 16384 VQGAN, ViT-B-32) with random weights, or the tiny models,
so it runs anywhere without downloads. The CLI (`artgen bench`) and benchmarks/bench_engine.py
both call `run_benchmark`. Agreement checks, profiling and the API's end-to-end timing are
scripts in benchmarks/ (bench_agreement.py, bench_profile.py, bench_api.py) built on this runner.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import re
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from artgen.engine.batch import BatchGeneration
from artgen.engine.generate import Generation
from artgen.engine.options import EngineOptions
from artgen.engine.params import GenerationParams
from artgen.models.loading import Models, random_models, use_layout

# "compiled": the fast path with torch.compile (the engine falls back to eager if it fails);
# "cudagraphs": the same in torch.compile's "reduce-overhead" mode (CUDA graphs).
PATHS = ("reference", "fast", "compiled", "cudagraphs")
COMPILE_MODES: dict[str, bool | str] = {"compiled": True, "cudagraphs": "reduce-overhead"}


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    device: torch.device
    model: str = "random-f16"  # a RANDOM_MODELS kind: "random-f16" (full-size shapes) or "tiny"
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
        """Per size: each path's ms/iteration and how many times faster than the reference."""
        rows = []
        for size in sorted({case.size for case in self.cases if case.jobs == 1}):
            ms = {
                case.path: case.ms_per_iteration
                for case in self.cases
                if case.size == size and case.jobs == 1 and case.ms_per_iteration is not None
            }
            if "reference" in ms and len(ms) > 1:
                row: dict[str, Any] = {"size": size, **{f"{p}_ms": v for p, v in ms.items()}}
                for path, value in ms.items():
                    if path != "reference":
                        row["speedup" if path == "fast" else f"{path}_speedup"] = (
                            ms["reference"] / value
                        )
                rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (cases plus the derived speedups)."""
        data = asdict(self)
        data["speedups"] = self.speedups()
        return data


def device_name(device: torch.device) -> str:
    """Human name: the GPU's name, or the CPU's model name (Linux /proc/cpuinfo) if known."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


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


# What `peak_memory_bytes` means on each kind of device.
MEMORY_MEASURES = {
    "cuda": "torch.cuda.max_memory_allocated per case (weights included)",
    "cpu": "process peak RSS so far (ru_maxrss), a high-water mark across cases",
}


def build_models(model: str, device: torch.device) -> Models:
    """The Models bundle to benchmark: full-size shapes with random weights, or "tiny"."""
    return random_models(model, device)


def use_case_layout(models: Models, device: torch.device, fast: bool) -> None:
    """Set the VQGAN weight layout of a case: plain for the reference, as loaded for the fast path.

    The reference stays the plain fp32 algorithm; the fast path gets channels_last on CUDA, where
    load_models puts it. The bundle is shared, so each case sets the layout it wants.
    """
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


def bench_params(config: BenchConfig, size: int, seed: int) -> GenerationParams:
    """GenerationParams for one timed case (enough iterations for warm-up + timed steps)."""
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


def measure(case: CaseResult, config: BenchConfig, build: Callable[[], Callable[[], Any]]) -> None:
    """Time the step that `build` makes; its warnings (a compile fallback) become the case note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        case.ms_per_iteration = time_steps(build(), config)
    case.iterations_per_second = case.jobs * 1000 / case.ms_per_iteration
    case.peak_memory_bytes = peak_memory(config.device)
    if config.device.type == "cuda":  # what the caching allocator held (what nvidia-smi shows)
        case.peak_reserved_bytes = int(torch.cuda.max_memory_reserved(config.device))
    case.note = warning_note(caught)


def measure_single(models: Models, config: BenchConfig, path: str, size: int) -> CaseResult:
    """One job on the reference or fast path."""
    case = CaseResult(path, size, config.cutn, jobs=1, iterations=config.iterations)
    use_case_layout(models, config.device, fast=path != "reference")
    options = EngineOptions(fast=path != "reference", compile=COMPILE_MODES.get(path, False))

    def build() -> Callable[[], Any]:
        params = bench_params(config, size, seed=0)
        return Generation(models, params, device=config.device, options=options).step

    measure(case, config, build)
    return case


def measure_batch(models: Models, config: BenchConfig) -> CaseResult:
    """`batch_jobs` jobs of the same size stepped together by the engine's batch mode."""
    jobs, size = config.batch_jobs, config.batch_size
    case = CaseResult("batch", size, config.cutn, jobs, iterations=config.iterations)
    use_case_layout(models, config.device, fast=True)

    def build() -> Callable[[], Any]:
        fast = EngineOptions(fast=True)
        generations = [
            Generation(
                models, bench_params(config, size, index), device=config.device, options=fast
            )
            for index in range(jobs)
        ]
        return BatchGeneration(models, generations, device=config.device).step

    measure(case, config, build)
    return case


def guarded(measure: Callable[[], CaseResult], fallback: CaseResult) -> CaseResult:
    """Run one case; an error (out of memory, say) is recorded, not fatal."""
    try:
        return measure()
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
    models: Models | None = None,
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
        memory_measure=MEMORY_MEASURES["cuda" if config.device.type == "cuda" else "cpu"],
        config=config_json,
        environment=environment(),
    )
    bundle = models if models is not None else build_models(config.model, config.device)
    result.environment["models"] = {"vqgan": bundle.vqgan_name, "clip": bundle.clip_names}
    cases: list[tuple[Callable[[], CaseResult], CaseResult]] = [
        (
            partial(measure_single, bundle, config, path, size),
            CaseResult(path, size, config.cutn, 1, config.iterations),
        )
        for size in config.sizes
        for path in config.paths
    ]
    if config.batch_jobs > 0:
        batch = CaseResult("batch", config.batch_size, config.cutn, config.batch_jobs, 0)
        cases.append((partial(measure_batch, bundle, config), batch))
    for measure_case, fallback in cases:
        result.cases.append(guarded(measure_case, fallback))
        if report is not None:
            report(result.cases[-1])
    return result


def format_bytes(count: int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if count is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def render_table(result: BenchResult) -> Any:
    """A rich Table: one row per case, with the reference/fast speedup on each fast row."""
    table = Table(
        title=f"artgen engine, {result.device_name} (torch {result.torch_version}, "
        f"{result.config['model']} models)"
    )
    for column in ("path", "size", "cutn", "jobs", "ms/it", "it/s", "peak memory", "speedup"):
        table.add_column(column, justify="left" if column == "path" else "right")
    reference_ms = {row["size"]: row["reference_ms"] for row in result.speedups()}
    errors = []
    for case in result.cases:
        cells = [case.path, str(case.size), str(case.cutn), str(case.jobs)]
        ms, per_second = case.ms_per_iteration, case.iterations_per_second
        if case.error is not None or ms is None or per_second is None:
            errors.append(f"{case.path} {case.size}px x{case.jobs}: {case.error}")
            table.add_row(*cells, f"error {len(errors)}", "-", "-", "")
            continue
        ratio = None
        if case.path != "reference" and case.jobs == 1 and case.size in reference_ms:
            ratio = reference_ms[case.size] / ms
        table.add_row(
            *cells,
            f"{ms:.2f}" if ms < 10 else f"{ms:.1f}",
            f"{per_second:.2f}",
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
