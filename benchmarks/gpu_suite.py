"""The issue 6 checks and table in one process (models built once), within a time budget.

Called by benchmarks/gpu_check.sh; `--device cpu --quick` rehearses every part on a CPU.
Each part writes its JSON as soon as it ends, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_agreement import agreement_line, agreement_summary, check_agreement
from bench_api import api_end_to_end
from bench_profile import profile_steps
from gpu_targets import COMPILED_PATHS, SEED_NOTE, TARGETS, case_errors, print_summary, summary

from artgen.bench import (
    BenchConfig,
    build_models,
    device_label,
    device_name,
    render_table,
    run_benchmark,
    use_case_layout,
    write_json,
    write_result,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny models, small sizes")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--budget", type=float, default=250.0, help="seconds after which no part starts"
    )
    parser.add_argument(
        "--hard-limit",
        type=float,
        default=None,
        help="seconds after which a running part is cut off (default: budget + 45)",
    )
    return parser.parse_args(argv)


def plan(quick: bool) -> dict[str, Any]:
    """Sizes and counts of each part."""
    if quick:
        return {
            "model": "tiny",
            "sizes": (32, 64),
            "memory_sizes": (64,),
            # Compiling on a CPU takes minutes and says nothing about the GPU: not in quick.
            "compile_sizes": (),
            "profile_size": 32,
            "cutn": 4,
            "iterations": 2,
            "warmup": 1,
            "jobs": 2,
            "job_size": 32,
            "agree_size": 32,
            "agree_iterations": 4,
            "api_size": 32,
            "api_iterations": 5,
            "api_batch_jobs": 2,
            "api_batch_size": 32,
            "api_batch_iterations": 5,
        }
    return {
        "model": "random-f16",
        "sizes": (64, 128, 256, 512),
        "memory_sizes": (1024,),
        "compile_sizes": (512, 64),  # 512 first: the budget may not reach the second
        "profile_size": 512,
        "cutn": 64,
        "iterations": 20,
        "warmup": 5,
        "jobs": 8,
        "job_size": 256,
        "agree_size": 64,
        "agree_iterations": 20,
        "api_size": 512,
        "api_iterations": 100,
        "api_batch_jobs": 8,
        "api_batch_size": 256,
        "api_batch_iterations": 50,
    }


class PartTimeout(BaseException):
    """Raised in a part at the hard time limit.

    A BaseException, so that the engine's and the benchmark's `except Exception` handlers (the
    torch.compile fallback to eager, one failed case) let it through instead of swallowing it.
    """


def _time_up(signum: int, frame: Any) -> None:
    raise PartTimeout


class Budget:
    """Skips the parts that would start after the budget; cuts off one still running at the limit.

    A skipped or cut-off `optional` part is not a failure; a required one is.
    """

    def __init__(self, seconds: float, hard_seconds: float) -> None:
        now = time.monotonic()
        self.deadline = now + seconds
        self.hard_deadline = now + max(hard_seconds, seconds)
        self.outcomes: dict[str, str] = {}
        self.required: set[str] = set()

    def part(self, name: str, action: Callable[[], Any], optional: bool = False) -> Any:
        """Run `action` unless out of time; record ok / failed / skipped / cut off."""
        if not optional:
            self.required.add(name)
        now = time.monotonic()
        if now > self.deadline:
            self.outcomes[name] = "skipped (time budget spent)"
            print(f"--- {name}: skipped, time budget spent", flush=True)
            return None
        print(f"=== {name}", flush=True)
        previous = signal.signal(signal.SIGALRM, _time_up)
        signal.setitimer(signal.ITIMER_REAL, max(self.hard_deadline - now, 0.01))
        try:
            value = action()
        except PartTimeout:
            self.outcomes[name] = f"cut off at the hard time limit ({time.monotonic() - now:.0f} s)"
            print(f"--- {name}: cut off at the hard time limit", flush=True)
            return None
        except Exception as error:  # one broken part must not lose the others
            traceback.print_exc()
            self.outcomes[name] = f"failed: {type(error).__name__}: {error}".splitlines()[0]
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        self.outcomes[name] = f"ok ({time.monotonic() - now:.0f} s)"
        return value

    def passed(self) -> bool:
        """Every required part ran and ended ok; optional parts only must not have failed."""
        for name, outcome in self.outcomes.items():
            if outcome.startswith("ok"):
                continue
            if name in self.required or outcome.startswith("failed"):
                return False
        return True


def use_layout(models: Any, device: torch.device, path: str) -> None:
    """Set the shared VQGAN's weight layout for a case: plain for the reference, else as loaded.

    load_models puts the weights channels_last on CUDA; a reference case must run the plain fp32
    algorithm, so each case sets the layout it wants (artgen bench does the same per case).
    """
    use_case_layout(models, device, fast=path != "reference")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    hard_limit = args.hard_limit if args.hard_limit is not None else args.budget + 45
    budget = Budget(args.budget, hard_limit)
    sizes = plan(args.quick)
    device = torch.device(args.device)
    label = device_label(device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; plan {sizes}", flush=True)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.output_dir.mkdir(parents=True, exist_ok=True)
    summary_path = args.output_dir / f"{label}-{stamp}-summary.json"
    models = budget.part("build models", lambda: build_models(sizes["model"], device))
    if models is None:
        return 1

    agreed: dict[str, Any] = {}  # kept for the summary even when the check fails

    def agreement() -> dict:
        # Each run inside sets its own layout: plain for the reference, channels_last on CUDA.
        data = check_agreement(
            models, device, size=sizes["agree_size"], cutn=16,
            iterations=sizes["agree_iterations"],
        )  # fmt: skip
        data.update(device=label, device_name=device_name(device), torch_version=torch.__version__)
        print(agreement_line(data), flush=True)
        write_json(data, args.output_dir, label, "agreement")
        agreed.update(data)
        if not data["ok"]:
            raise AssertionError("fast and reference paths disagree beyond tolerance")
        return data

    budget.part("fast vs reference agreement", agreement)

    def bench(
        part_sizes: tuple[int, ...],
        iterations: int,
        warmup: int,
        jobs: int,
        tag: str,
        paths: tuple[str, ...] = ("reference", "fast"),
        write: bool = True,
    ) -> Any:
        """Each size's paths side by side, then the batched jobs; one BenchResult."""

        def measure(case_sizes: tuple[int, ...], case_paths: tuple[str, ...], n: int) -> Any:
            config = BenchConfig(
                device=device, model=sizes["model"], sizes=case_sizes, cutn=sizes["cutn"],
                iterations=iterations, warmup=warmup, paths=case_paths, batch_jobs=n,
                batch_size=sizes["job_size"],
            )  # fmt: skip
            return run_benchmark(
                config,
                lambda case: print(f"  {case.path:>10} {case.size:>5} x{case.jobs}: "
                                   f"{case.error or f'{case.ms_per_iteration:.2f} ms/it'}",
                                   flush=True),
                models=models,
            )  # fmt: skip

        results = []
        for size in part_sizes:
            for path in paths:
                use_layout(models, device, path)
                results.append(measure((size,), (path,), 0))
        if jobs > 0:
            use_layout(models, device, "batch")
            results.append(measure((), (), jobs))
        result = results[0]
        for part in results[1:]:
            result.cases.extend(part.cases)
        result.config.update(sizes=list(part_sizes), paths=list(paths), batch_jobs=jobs)
        if write:
            write_result(result, args.output_dir, tag)
        return result

    table = budget.part(
        "engine table (reference vs fast, batched jobs)",
        lambda: bench(sizes["sizes"], sizes["iterations"], sizes["warmup"], sizes["jobs"], "table"),
    )
    memory = budget.part(
        "peak memory at large sizes",
        lambda: bench(sizes["memory_sizes"], 3, 1, 0, "memory"),
    )

    def api() -> dict:
        with tempfile.TemporaryDirectory(prefix="artgen-api-") as data_dir:
            data = api_end_to_end(
                Path(data_dir), sizes["model"], str(device), size=sizes["api_size"],
                iterations=sizes["api_iterations"], cutn=sizes["cutn"],
            )  # fmt: skip
        data.update(device=label, device_name=device_name(device))
        print(f"POST to image: {data['post_to_image_seconds']:.2f} s", flush=True)
        write_json(data, args.output_dir, label, "api")
        return data

    # The API's worker loads its own copy of the models (about 1 GiB more on the GPU).
    api_result = budget.part("API end to end", api)

    def api_batching_part() -> dict:
        from bench_batching import compare

        data = compare(
            sizes["model"], str(device), jobs=sizes["api_batch_jobs"],
            size=sizes["api_batch_size"], iterations=sizes["api_batch_iterations"],
            cutn=sizes["cutn"],
        )  # fmt: skip
        alone, batched = data["runs"]
        print(f"API, {data['jobs']} jobs at {data['size']}px: one at a time "
              f"{alone['iterations_per_second']:.1f} it/s, batched "
              f"{batched['iterations_per_second']:.1f} it/s ({data['speedup']:.2f}x)",
              flush=True)  # fmt: skip
        return data

    # The worker's own batching (jobs joining as they are queued), in the summary JSON only.
    api_batching = budget.part("API batched jobs", api_batching_part, optional=True)

    def profile_part() -> dict:
        use_layout(models, device, "fast")
        data = profile_steps(models, device, sizes["profile_size"], sizes["cutn"])
        print(data.pop("table"), flush=True)
        return data

    # Where the fast path's time goes (for the gap to the targets), printed and kept in summary.
    profile = budget.part(
        f"profile of the fast path at {sizes['profile_size']}px", profile_part, optional=True
    )

    def report(results: tuple[Any, ...], compiled: Any = None, show: bool = True) -> None:
        """Print the tables and the targets (if `show`) and (re)write the summary JSON."""
        from rich.console import Console

        measured = summary(table, memory, api_result, sizes["job_size"], compiled, api_batching)
        if show:
            for result in results:
                if result is not None:
                    Console(width=140).print(render_table(result))
            print_summary(measured, table)
            if agreed:
                print("agreement:", agreement_line(agreed))
        data = {"device": label, "device_name": device_name(device),
                "torch_version": torch.__version__, "plan": sizes,
                "targets": {k: v[0] for k, v in TARGETS.items()}, "measured": measured,
                "agreement": agreement_summary(agreed or None), "parts": budget.outcomes,
                "seed_figures": SEED_NOTE, "case_errors": case_errors(table, memory),
                "passed": budget.passed() and not case_errors(table, memory),
                "profile": profile, "api_batching": api_batching}  # fmt: skip
        summary_path.write_text(json.dumps(data, indent=2) + "\n")

    # The summary is written now too, in case the compile part below runs past the hard limit.
    report((table, memory))
    # One case per part, the JSON rewritten after each: the hard limit may cut this part short,
    # and a case cut off must not take the finished ones with it.
    compiled = None
    compiled_path = args.output_dir / f"{label}-{stamp}-compiled.json"
    for size in sizes["compile_sizes"]:
        for path in COMPILED_PATHS:
            result = budget.part(
                f"torch.compile ({path}) at {size}px",
                lambda size=size, path=path: bench((size,), sizes["iterations"],
                                                   sizes["warmup"], 0, "", paths=(path,),
                                                   write=False),
                optional=True,
            )  # fmt: skip
            if result is None:
                continue
            if compiled is None:
                compiled = result
            else:
                compiled.cases.extend(result.cases)
            compiled.config.update(sizes=list(sizes["compile_sizes"]), paths=list(COMPILED_PATHS))
            compiled_path.write_text(json.dumps(compiled.to_json(), indent=2) + "\n")
            report((), compiled, show=False)
    if compiled is not None:
        report((compiled,), compiled)
    print("\nparts:", *(f"  {name}: {outcome}" for name, outcome in budget.outcomes.items()),
          sep="\n")  # fmt: skip
    errors = case_errors(table, memory)
    for error in errors:
        print(f"case not measured: {error}")
    passed = budget.passed() and not errors
    print("suite:", "passed" if passed else "FAILED (a required part or case failed, was skipped "
          "or was cut off)")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
