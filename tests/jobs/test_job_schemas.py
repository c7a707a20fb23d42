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
        ({"prompts": "a:1.2.3"}, "not a number"),
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
        "urls",
    }  # fmt: skip
    assert data["progress"] == 0.42 and data["queue_position"] is None
    assert data["urls"] == {
        "self": f"/v1/jobs/{job.id}",
        "events": f"/v1/jobs/{job.id}/events",
        "preview": f"/v1/jobs/{job.id}/preview",
        "image": None,
        "video": None,
        "cancel": f"/v1/jobs/{job.id}/cancel",
    }
    assert JobStatus.canceled.terminal and not JobStatus.running.terminal
