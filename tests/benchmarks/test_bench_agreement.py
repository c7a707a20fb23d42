"""benchmarks/bench_agreement.py on the tiny models: the check passes and catches a broken path."""

import json
import math

import torch

from artgen.engine import generate as generate_module

CPU = torch.device("cpu")


def small_check(agreement, models):
    return agreement.check_agreement(models, CPU, size=32, cutn=8, iterations=2, gradient_draws=2)


def test_fast_and_reference_agree(scripts, tiny_models):
    agreement = scripts("bench_agreement")
    data = small_check(agreement, tiny_models)
    assert len(data["reference_losses"]) == len(data["fast_losses"]) == 2
    assert data["first_step_relative_difference"] <= data["tolerance"]
    assert data["z_gradient_cosine_mean"] >= 0.9
    assert data["z_gradient_cosine_bf16_mean"] is None  # bf16 is compared on CUDA only
    summary = agreement.agreement_summary(data)
    assert set(summary) == set(agreement.SUMMARY_KEYS)
    json.dumps(summary, allow_nan=False)  # an infinite PSNR is written as "inf"
    assert "reference_losses" not in summary
    assert agreement.agreement_line(data).endswith(": ok" if data["ok"] else ": NOT OK")


def test_a_fast_path_that_flips_its_cutouts_is_caught(scripts, tiny_models, monkeypatch):
    original = generate_module.FastCutouts.__call__

    def flipped(self, image, generator):
        return original(self, image, generator).flip(-1)

    monkeypatch.setattr(generate_module.FastCutouts, "__call__", flipped)
    data = small_check(scripts("bench_agreement"), tiny_models)
    assert data["z_gradient_cosine_mean"] < data["z_gradient_cosine_threshold"]
    assert data["ok"] is False


def test_the_script_writes_its_json(scripts, tmp_path, capsys):
    argv = ["--size", "32", "--cutn", "4", "--iterations", "1", "--draws", "1"]
    status = scripts("bench_agreement").main([*argv, "--output-dir", str(tmp_path)])
    (written,) = tmp_path.glob("cpu-*-agreement.json")
    # json writes an infinite PSNR (identical images) as Infinity: parse it back as such.
    data = json.loads(written.read_text(), parse_constant=lambda name: math.inf)
    assert status == (0 if data["ok"] else 1)
    assert data["command"].endswith(" ".join(argv + ["--output-dir", str(tmp_path)]))
    assert "first_step_relative_difference" in capsys.readouterr().out
