"""POST /v1/prompts/parse: the server's prompt grammar, as the page's chips show it."""

from __future__ import annotations

import pytest
from apitools import assert_error
from fastapi.testclient import TestClient


def test_parse_reads_weights_stops_and_text_colons(idle_client: TestClient) -> None:
    body = {
        "prompt": "a castle:1 | fog:-0.5 | tower:2:0.3 | a:b:c:d | castle:",
        "noise_prompts": "3",
    }
    answer = idle_client.post("/v1/prompts/parse", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "prompts": [
            {"text": "a castle", "weight": 1.0, "stop": None},
            {"text": "fog", "weight": -0.5, "stop": None},
            {"text": "tower", "weight": 2.0, "stop": 0.3},
            {"text": "a:b:c:d", "weight": 1.0, "stop": None},
            {"text": "castle:", "weight": 1.0, "stop": None},
        ],
        "noise_prompts": [{"seed": 3, "weight": 1.0}],
    }


def test_parse_takes_a_list_like_jobs_do(idle_client: TestClient) -> None:
    answer = idle_client.post("/v1/prompts/parse", json={"prompt": ["fog:2", "rain"]})
    assert [item["text"] for item in answer.json()["prompts"]] == ["fog", "rain"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"prompt": "a || b"}, "prompt", "prompt 2 of 'a || b' is empty"),
        ({"prompt": ":0.5"}, "prompt", "has a weight but no text"),
        ({"prompt": "x:inf"}, "prompt", "must be a finite number"),
        ({"prompt": "x", "noise_prompts": "abc"}, "noise_prompts", "non-negative integer"),
        ({"prompt": "x" * 100_001}, "prompt", "at most 100000 characters"),
        ({}, "prompt", "field required"),
    ],
)
def test_parse_errors_name_the_field(
    idle_client: TestClient, body: dict, field: str, message: str
) -> None:
    answer = idle_client.post("/v1/prompts/parse", json=body)
    assert_error(answer, 422, "validation_error")
    detail = answer.json()["error"]["details"][0]
    assert detail["field"] == field and message in detail["message"]


def test_parse_agrees_with_job_validation(idle_client: TestClient) -> None:
    # The message the page shows while typing is the one a submit would get.
    parsed = idle_client.post("/v1/prompts/parse", json={"prompt": "a | :1"})
    job = idle_client.post("/v1/jobs", json={"prompts": "a | :1", "width": 32, "height": 32})
    assert parsed.status_code == job.status_code == 422
    assert parsed.json()["error"]["details"][0]["message"] in job.json()["error"]["message"]
