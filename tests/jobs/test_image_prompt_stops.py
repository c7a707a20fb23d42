"""Image prompts' stops (the seed's 'path:weight:stop') through the job service."""

from __future__ import annotations

import pytest
from jobtools import tiny_request
from pydantic import ValidationError

from artgen.jobs.schemas import JobCreate
from artgen.jobs.service import JobService
from artgen.jobs.validation import InvalidJob
from support import image_bytes


def test_stops_must_match_the_uploaded_image_prompts(service: JobService) -> None:
    with pytest.raises(InvalidJob) as error:
        service.submit(tiny_request(image_prompt_stops=[0.2]))
    assert error.value.field == "image_prompt_stops"
    assert "1 stops for 0 image prompts" in str(error.value)


def test_stops_are_recorded_with_the_job(service: JobService) -> None:
    request = tiny_request(prompts="", image_prompt_weights=[0.5], image_prompt_stops=[0.2])
    job, created = service.submit(request, image_prompts=[image_bytes()])
    assert created
    assert job.params["image_prompt_stops"] == [0.2]
    assert job.params["image_prompt_weights"] == [0.5]
    assert JobCreate(**job.params).generation_params().image_prompt_stops == [0.2]


def test_a_stop_may_be_null_and_must_be_a_finite_number() -> None:
    assert tiny_request(image_prompt_stops=[None, 0.1]).image_prompt_stops == [None, 0.1]
    with pytest.raises(ValidationError, match="finite"):
        tiny_request(image_prompt_stops=[float("-inf")])
