"""JobCreate validation and the public Job JSON."""

from __future__ import annotations

import pydantic
import pytest

from artgen.jobs.schemas import JobCreate


def test_prompts_accept_a_list() -> None:
    request = JobCreate(prompts=["a castle:1", "fog:-0.5"])
    assert request.prompts == "a castle:1 | fog:-0.5"
    assert request.generation_params().prompts == "a castle:1 | fog:-0.5"
    assert "model" not in request.generation_params().model_dump()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompts": "x", "colour": "red"}, "colour"),
        ({"prompts": "x", "clip_models": []}, "clip_models"),
        ({"prompts": "x", "preview_every": 0}, "preview_every"),
        ({"prompts": ["x", 3]}, "only strings"),
        ({"prompts": "x", "width": 8}, "width"),
        ({"prompts": "a:inf"}, "finite"),
    ],
)
def test_bad_requests_name_the_problem(fields: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        JobCreate(**fields)


def test_prompt_is_the_name_prompts_an_alias() -> None:
    assert JobCreate(prompt="a | b").prompts == "a | b"
    assert JobCreate.model_validate({"prompt": ["a", "b"]}).prompts == "a | b"
    assert JobCreate.model_validate({"prompts": "a"}).prompts == "a"
    assert "prompts" in JobCreate(prompt="a").model_dump()
    with pytest.raises(pydantic.ValidationError, match="not both"):
        JobCreate.model_validate({"prompt": "a", "prompts": "b"})


def test_clip_models_deduplicated_and_capped() -> None:
    assert JobCreate(prompt="a", clip_models=["tiny", "x/y", "tiny"]).clip_models == ["tiny", "x/y"]
    with pytest.raises(pydantic.ValidationError, match="at most"):
        JobCreate(prompt="a", clip_models=[f"arch/tag{i}" for i in range(9)])


def test_schedule_entries_need_prompts_and_are_capped() -> None:
    with pytest.raises(pydantic.ValidationError, match="empty"):
        JobCreate(prompt="a", iterations=9, schedule=[{"at": 2, "prompts": " "}])
    many = [{"at": at, "prompts": "b"} for at in range(1, 200)]
    with pytest.raises(pydantic.ValidationError, match="at most"):
        JobCreate(prompt="a", iterations=500, schedule=many)
