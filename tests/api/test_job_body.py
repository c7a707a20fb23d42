"""artgen.api.job_body: a job's JSON parameters parsed once, each refusal a 422 naming the field."""

from __future__ import annotations

import json

import pytest

from artgen.api.errors import ApiError
from artgen.api.job_body import MAX_JSON_DEPTH, parse_job_create


def _refusal(raw: str, prefix: tuple[str, ...] = ()) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_job_create(raw, prefix)
    assert caught.value.status_code == 422
    return caught.value


def test_valid_json_becomes_a_job_create() -> None:
    request = parse_job_create(json.dumps({"prompts": "a castle", "iterations": 3}))
    assert request.prompts == "a castle"
    assert request.iterations == 3


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested deeper"),
    ],
)
def test_malformed_bodies_are_refused_naming_the_field(raw: str, words: str) -> None:
    refusal = _refusal(raw, ("params",))
    assert words in str(refusal.message)
    assert refusal.field == "params"


def test_a_lone_surrogate_is_refused_at_its_path() -> None:
    refusal = _refusal('{"prompts": "a \\ud800 castle"}')
    assert refusal.field == "prompts"
