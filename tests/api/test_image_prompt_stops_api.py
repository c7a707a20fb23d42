"""POST /v1/jobs with image prompts' weights and stops (the seed's 'path:weight:stop')."""

from __future__ import annotations

import json

from apitools import assert_error, png_bytes, small_job


def _multipart(client, params, count):
    files = [("image_prompts", (f"{i}.png", png_bytes(), "image/png")) for i in range(count)]
    return client.post("/v1/jobs", data={"params": json.dumps(params)}, files=files)


def test_image_prompt_stops_are_accepted_and_recorded(idle_client):
    params = small_job(prompts="", image_prompt_weights=[1.0, 0.5], image_prompt_stops=[None, 0.2])
    response = _multipart(idle_client, params, 2)
    assert response.status_code == 202, response.text
    assert response.json()["params"]["image_prompt_stops"] == [None, 0.2]


def test_image_prompt_stops_that_do_not_match_the_uploads_are_422(idle_client):
    response = _multipart(idle_client, small_job(image_prompt_stops=[0.2, 0.3]), 1)
    body = assert_error(response, 422, "validation_error", "image_prompt_stops")
    assert "2 stops for 1 image prompts" in json.dumps(body)
    response = idle_client.post("/v1/jobs", json=small_job(image_prompt_stops=["soon"]))
    assert_error(response, 422, "validation_error")
