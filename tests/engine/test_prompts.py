"""Prompt syntax and prompt losses."""

import math

import pytest
import torch

from artgen.engine.prompts import (
    NoisePromptSpec,
    Prompt,
    PromptSpec,
    noise_embedding,
    parse_noise_prompts,
    parse_prompts,
    spherical_distance,
)


def test_parse_full_syntax():
    specs = parse_prompts("a castle:1 | fog:-0.5 | tower:2:0.3 | plain")
    assert specs == [
        PromptSpec("a castle", 1.0),
        PromptSpec("fog", -0.5),
        PromptSpec("tower", 2.0, 0.3),
        PromptSpec("plain", 1.0, -math.inf),
    ]


def test_colons_in_text_stay_text():
    assert parse_prompts("a photo: sunset") == [PromptSpec("a photo: sunset")]
    assert parse_prompts("see http://example.com/x:0.5") == [
        PromptSpec("see http://example.com/x", 0.5)
    ]
    assert parse_prompts("ratio 16:9 screen") == [PromptSpec("ratio 16:9 screen")]
    assert parse_prompts("time 10:30:2") == [PromptSpec("time 10", 30.0, 2.0)]


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        # One rule (README "Prompts"): a ':' field is a weight or stop only when it is a number.
        ("a:b:c:d", PromptSpec("a:b:c:d")),
        ("a castle:abc", PromptSpec("a castle:abc")),
        ("castle:", PromptSpec("castle:")),
        ("castle: ", PromptSpec("castle:")),
        ("castle:1e", PromptSpec("castle:1e")),
        ("x:1.2.3", PromptSpec("x:1.2.3")),
        ("a:b:0.5", PromptSpec("a:b", 0.5)),
        ("a:b:0.5:-1", PromptSpec("a:b", 0.5, -1.0)),
        ("a:0.5:b", PromptSpec("a:0.5:b")),
        ("fog: -.5 ", PromptSpec("fog", -0.5)),
        ("fog:+2e-1:0", PromptSpec("fog", 0.2, 0.0)),
        ("fog:1:-inf", PromptSpec("fog", 1.0)),
        ("fog:nan", PromptSpec("fog:nan")),
    ],
)
def test_one_grammar_for_colons(text, spec):
    assert parse_prompts(text) == [spec]


def test_empty_text_gives_no_prompts():
    assert parse_prompts("") == []
    assert parse_prompts("   ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a || b", "prompt 2"),
        ("a |", "prompt 2"),
        (":1", "no text"),
        (" :1:2", "no text"),
        ("x:inf", "finite"),
        ("x:1e999", "finite"),
        ("x:1:inf", "stop in prompt 'x:1:inf' must be a finite number"),
    ],
)
def test_bad_prompts_have_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prompts(text)


def test_noise_prompts():
    assert parse_noise_prompts("3:0.5 | 7") == [NoisePromptSpec(3, 0.5), NoisePromptSpec(7, 1.0)]
    assert parse_noise_prompts("") == []
    bad_noise = [("x", "non-negative integer"), ("1:2:3", "seed:weight"), ("-1", "seed")]
    bad_noise += [("1:x", "'x' is not a number"), ("1:inf", "finite")]
    for bad, message in bad_noise:
        with pytest.raises(ValueError, match=message):
            parse_noise_prompts(bad)


def test_noise_embedding_is_seeded():
    assert torch.equal(noise_embedding(5, 8), noise_embedding(5, 8))
    assert not torch.equal(noise_embedding(5, 8), noise_embedding(6, 8))
    assert noise_embedding(5, 8).shape == (1, 8)


def test_spherical_distance_range():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    distances = spherical_distance(x, torch.tensor([[3.0, 0.0]]))
    assert distances[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    # Orthogonal unit vectors: 2 * arcsin(sqrt(2) / 2) ** 2 = 2 * (pi / 4) ** 2.
    assert distances[1, 0].item() == pytest.approx(2 * (math.pi / 4) ** 2, rel=1e-5)


def test_prompt_pulls_and_pushes():
    target = torch.tensor([[1.0, 0.0, 0.0]])
    image = torch.tensor([[0.6, 0.8, 0.0]], requires_grad=True)
    pull = Prompt(target, weight=1.0)(image)
    pull.backward()
    pull_grad = image.grad.clone()
    image.grad = None
    push = Prompt(target, weight=-1.0)(image)
    push.backward()
    assert push.item() == pytest.approx(-pull.item())
    assert torch.allclose(image.grad, -pull_grad)
    # Descending the pull loss moves the embedding toward the target.
    assert pull_grad[0, 0] < 0


def test_prompt_stop_keeps_value_but_stops_gradient():
    target = torch.tensor([[1.0, 0.0]])
    image = torch.tensor([[0.8, 0.6]], requires_grad=True)
    free = Prompt(target)(image)
    stopped = Prompt(target, stop=10.0)(image)
    assert stopped.item() == pytest.approx(free.item())
    stopped.backward()
    assert torch.count_nonzero(image.grad) == 0
