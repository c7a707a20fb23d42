"""artgen.jobs.validation: the server's limits on a request, every problem listed by field."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobtools import tiny_request

from artgen.config import Settings
from artgen.jobs.validation import InvalidJob, validate_request


def test_every_problem_is_listed_by_field(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, model="tiny", max_size=64, max_iterations=10)
    request = tiny_request(width=128, iterations=11, prompts="a\x00castle")
    with pytest.raises(InvalidJob) as caught:
        validate_request(settings, request, image_prompt_count=0)
    fields = [field for field, _ in caught.value.details]
    assert fields == ["prompts", "width", "iterations"]
    assert caught.value.field == "prompts"


def test_an_unknown_model_names_the_model_field(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, model="tiny")
    with pytest.raises(InvalidJob) as caught:
        validate_request(settings, tiny_request(model="no-such-model"), image_prompt_count=0)
    assert caught.value.field == "model"


def test_a_valid_request_passes(tmp_path: Path) -> None:
    validate_request(Settings(home=tmp_path, model="tiny"), tiny_request(), image_prompt_count=0)
