"""artgen.bench helpers on the tiny models (CPU): case notes keep every warning."""

import warnings

import torch

from artgen import bench
from artgen.engine import generate as generate_module

CPU = torch.device("cpu")


def test_note_keeps_every_warning_compile_fallback_first(tiny_models, monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    plain_params = bench.bench_params

    def warning_params(*args, **kwargs):
        warnings.warn("an earlier warning\nits second line", UserWarning, stacklevel=1)
        return plain_params(*args, **kwargs)

    monkeypatch.setattr(generate_module.torch, "compile", broken_compile)
    monkeypatch.setattr(bench, "bench_params", warning_params)
    config = bench.BenchConfig(device=CPU, model="tiny", cutn=2, iterations=1, warmup=0)
    case = bench.measure_single(tiny_models, config, "compiled", 32)
    # The decoder's and the critic's fallback say the same thing: kept once, and first.
    assert case.note == (
        "torch.compile unavailable, running eagerly: no compiler here | an earlier warning"
    )


def test_warning_note_is_bounded_and_none_without_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(10):
            warnings.warn(f"warning {index} " + "x" * 400, stacklevel=1)
        warnings.warn("torch.compile failed, running eagerly: late", stacklevel=1)
    note = bench.warning_note(caught)
    assert note is not None and len(note) == bench.NOTE_CHARACTERS
    assert note.startswith("torch.compile failed, running eagerly: late | warning 0 ")
    assert note.endswith("...")
    assert bench.warning_note([]) is None
