"""GenerationParams validation."""

import pytest
from pydantic import ValidationError

from artgen.engine.params import GenerationParams


def test_defaults_are_the_seeds():
    params = GenerationParams(prompts="a castle")
    assert (params.width, params.height, params.iterations) == (256, 256, 100)
    assert (params.step_size, params.cutn, params.cut_pow) == (0.1, 64, 1.0)
    assert params.optimizer == "adam" and params.seed is None


def test_json_round_trip():
    params = GenerationParams(
        prompts="a:1 | b:-1",
        seed=0,
        noise_prompts="1:0.5",
        schedule=[{"at": 5, "prompts": "c"}],
        image_prompt_weights=[0.5],
    )
    assert GenerationParams.model_validate_json(params.model_dump_json()) == params


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"width": 8}, "width"),
        ({"height": 4096}, "height"),
        ({"iterations": 0}, "iterations"),
        ({"cutn": 0}, "cutn"),
        ({"cutn": 1000}, "cutn"),
        ({"cut_pow": 0}, "cut_pow"),
        ({"step_size": -1}, "step_size"),
        ({"step_size": float("inf")}, "step_size"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"prompts": "x:inf"}, "prompts"),
        ({"noise_prompts": "abc"}, "noise_prompts"),
        ({"colour": "red"}, "colour"),
        ({"schedule": [{"at": 0, "prompts": "b"}]}, "at"),
        ({"schedule": [{"at": 2, "prompts": "b||c"}]}, "prompts"),
    ],
)
def test_bad_values_name_the_field(fields, where):
    with pytest.raises(ValidationError) as info:
        GenerationParams(**{"prompts": "a", **fields})
    assert where in str(info.value)


def test_schedule_rules():
    with pytest.raises(ValidationError, match="below iterations"):
        GenerationParams(prompts="a", iterations=10, schedule=[{"at": 10, "prompts": "b"}])
    with pytest.raises(ValidationError, match="same 'at'"):
        GenerationParams(
            prompts="a", schedule=[{"at": 3, "prompts": "b"}, {"at": 3, "prompts": "c"}]
        )
    params = GenerationParams(
        prompts="a", schedule=[{"at": 6, "prompts": "c"}, {"at": 3, "prompts": "b"}]
    )
    assert [params.prompts_at(i) for i in (0, 2, 3, 5, 6, 50)] == ["a", "a", "b", "b", "c", "c"]


def test_seed_zero_is_a_seed():
    assert GenerationParams(prompts="a", seed=0).seed == 0
