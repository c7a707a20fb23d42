"""JobCreate validation and the public Job JSON."""

from __future__ import annotations

import pydantic
import pytest

from artgen.jobs.schemas import Job, JobCreate, JobPublic, JobStatus


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


def test_public_json_shape() -> None:
    job = Job(id="7b0c6a3e-0000-4000-8000-000000000000", params={"prompts": "x"}, iterations=100)
    job.iteration, job.status = 42, JobStatus.running
    job.preview_file = "preview.png"
    data = JobPublic.from_job(job, queue_position=3).model_dump(mode="json")
    assert set(data) == {
        "id", "status", "params", "seed", "iteration", "iterations", "progress", "eta_seconds",
        "loss", "queue_position", "attempt", "created_at", "started_at", "finished_at", "error",
        "cancel_requested", "urls", "kind", "frame", "frames", "frames_done",
        "frame_iteration", "frame_iterations",
    }  # fmt: skip
    assert data["kind"] == "picture" and data["frames"] is None and data["frames_done"] == 0
    assert data["progress"] == 0.42 and data["queue_position"] is None
    assert data["urls"] == {
        "self": f"/v1/jobs/{job.id}",
        "events": f"/v1/jobs/{job.id}/events",
        "preview": f"/v1/jobs/{job.id}/preview",
        "image": None,
        "video": None,
        "cancel": f"/v1/jobs/{job.id}/cancel",
        "frames": None,
    }
    assert JobStatus.canceled.terminal and not JobStatus.running.terminal


def test_cancel_requested_shows_only_while_the_job_is_active() -> None:
    job = Job(id="7b0c6a3e-0000-4000-8000-000000000000", params={"prompts": "x"}, iterations=9)
    job.status, job.cancel_requested = JobStatus.running, True
    assert JobPublic.from_job(job).cancel_requested is True
    job.status = JobStatus.canceled
    assert JobPublic.from_job(job).cancel_requested is False


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
