"""API keys, job isolation, per-key limits, CORS, request ids and error hygiene."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from apitools import assert_error, small_job, wait_for, wait_ready
from fastapi.testclient import TestClient

from artgen.api.security import RateLimiter, authenticate, owner_of

KEY_A = {"X-API-Key": "key-a"}
KEY_B = {"X-API-Key": "key-b"}


def test_keys_are_required_except_for_health_docs_and_page(client_factory):
    client = client_factory(api_keys=["key-a", "key-b"])
    for method, path in [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/models"),
        ("POST", "/v1/generate_text2img_progressbar"),
        ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000/events"),
    ]:
        assert_error(client.request(method, path), 401, "unauthorized")
        assert_error(
            client.request(method, path, headers={"X-API-Key": "wrong"}), 401, "unauthorized"
        )
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    assert client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/v1/jobs", headers=KEY_A).status_code == 200


def test_a_key_sees_only_its_own_jobs(client_factory):
    client = client_factory(api_keys=["key-a", "key-b"])
    job_id = client.post("/v1/jobs", json=small_job(), headers=KEY_A).json()["id"]
    own = client.get(f"/v1/jobs/{job_id}", headers=KEY_A)
    assert own.status_code == 200

    for method, path in [
        ("GET", ""),
        ("GET", "/preview"),
        ("GET", "/image"),
        ("GET", "/events"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        response = client.request(method, f"/v1/jobs/{job_id}{path}", headers=KEY_B)
        assert_error(response, 404, "not_found")
    assert client.get("/v1/jobs", headers=KEY_B).json()["total"] == 0
    assert client.get("/v1/jobs", headers=KEY_A).json()["total"] == 1
    # The seed's progress endpoints follow the caller's own jobs only.
    assert_error(client.post("/v1/generate_text2img_progressbar", headers=KEY_B), 404, "not_found")
    bar = client.post("/v1/generate_text2img_progressbar", headers=KEY_A)
    assert bar.status_code == 200 and bar.headers["X-Job-Id"] == job_id
    # Still there and still queued: B's cancel and delete did nothing.
    assert client.get(f"/v1/jobs/{job_id}", headers=KEY_A).json()["status"] == "queued"


def test_rate_limit_is_per_key_with_retry_after(client_factory):
    client = client_factory(api_keys=["key-a", "key-b"], rate_limit_per_minute=2)
    for _ in range(2):
        assert client.post("/v1/jobs", json=small_job(), headers=KEY_A).status_code == 202
    response = client.post("/v1/jobs", json=small_job(), headers=KEY_A)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert client.post("/v1/jobs", json=small_job(), headers=KEY_B).status_code == 202
    # Reading is not rate limited.
    assert client.get("/v1/jobs", headers=KEY_A).status_code == 200


def test_active_job_limit_per_key(client_factory):
    client = client_factory(api_keys=["key-a", "key-b"], max_active_jobs_per_key=1)
    first = client.post("/v1/jobs", json=small_job(), headers=KEY_A).json()["id"]
    response = client.post("/v1/jobs", json=small_job(), headers=KEY_A)
    assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"]
    assert client.post("/v1/jobs", json=small_job(), headers=KEY_B).status_code == 202
    client.post(f"/v1/jobs/{first}/cancel", headers=KEY_A)
    assert client.post("/v1/jobs", json=small_job(), headers=KEY_A).status_code == 202


def test_rate_limiter_window_and_authenticate():
    limiter = RateLimiter(per_minute=2)
    limiter.check("a", now=0.0)
    limiter.check("a", now=1.0)
    try:
        limiter.check("a", now=2.0)
        raise AssertionError("third request in the window was accepted")
    except Exception as exc:
        assert getattr(exc, "status_code", None) == 429
        assert exc.headers["Retry-After"] == "58"
    limiter.check("a", now=61.0)
    assert authenticate(None, []) is None
    assert authenticate("k", ["x", "k"]) == owner_of("k") != "k"


def test_cors_is_off_by_default(idle_client):
    response = idle_client.options(
        "/v1/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers
    response = idle_client.get("/v1/jobs", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allow_list(client_factory):
    client = client_factory(cors_origins=["https://app.example"])
    preflight = client.options(
        "/v1/jobs",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    response = client.get("/v1/jobs", headers={"Origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "Location" in response.headers["access-control-expose-headers"]

    other = client.get("/v1/jobs", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    bad = client.options(
        "/v1/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in bad.headers


def test_cors_wildcard_never_with_credentials(client_factory):
    client = client_factory(cors_origins=["*"])
    response = client.get("/v1/jobs", headers={"Origin": "https://any.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


def test_request_id_in_and_out(idle_client):
    response = idle_client.get("/v1/jobs", headers={"X-Request-ID": "trace-123"})
    assert response.headers["X-Request-ID"] == "trace-123"
    response = idle_client.get("/v1/jobs", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(response.headers["X-Request-ID"]) == 32


def test_internal_errors_hide_the_traceback_and_log_it(idle_client, caplog):
    app = idle_client.app
    service = app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    original = service.list
    service.list = broken
    try:
        # No `with`: the fixture's lifespan (and patched service) stays in place.
        client = TestClient(app, raise_server_exceptions=False)
        response = client.get("/v1/jobs", headers={"X-Request-ID": "req-500"})
    finally:
        service.list = original
    body = assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert "req-500" in body["error"]["message"]
    assert response.headers["X-Request-ID"] == "req-500"
    logged = [record for record in caplog.records if record.exc_info]
    assert any("req-500" in record.getMessage() for record in logged)


def test_static_page_and_docs(idle_client):
    page = idle_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert idle_client.get("/docs").status_code == 200
    schema = idle_client.get("/openapi.json").json()
    assert "JobCreate" in schema["components"]["schemas"]
    content = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)


def test_concurrent_submissions_never_pass_the_active_job_limit(client_factory):
    client = client_factory(api_keys=["key-a"], max_active_jobs_per_key=2)
    barrier = threading.Barrier(20)

    def submit(seed):
        barrier.wait()
        return client.post("/v1/jobs", json=small_job(seed=seed), headers=KEY_A).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(submit, range(20)))
    assert sorted(statuses) == [202] * 2 + [429] * 18, statuses
    assert client.get("/v1/jobs", headers=KEY_A).json()["total"] == 2


def test_an_idempotent_retry_never_counts_against_the_limits(client_factory):
    client = client_factory(api_keys=["key-a"], rate_limit_per_minute=2, max_active_jobs_per_key=1)
    headers = {**KEY_A, "Idempotency-Key": "order-1"}
    first = client.post("/v1/jobs", json=small_job(), headers=headers)
    assert first.status_code == 202, first.text
    for _ in range(3):
        again = client.post("/v1/jobs", json=small_job(), headers=headers)
        assert again.status_code == 202, again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
    # The retries used none of the two submissions a minute: one more new job is accepted ...
    client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=KEY_A)
    second = client.post("/v1/jobs", json=small_job(seed=2), headers=KEY_A)
    assert second.status_code == 202, second.text
    client.post(f"/v1/jobs/{second.json()['id']}/cancel", headers=KEY_A)
    # ... and the third new one is over the rate (no job is active any more).
    third = client.post("/v1/jobs", json=small_job(seed=3), headers=KEY_A)
    assert "per minute" in assert_error(third, 429, "rate_limited")["error"]["message"]


def test_readyz_shows_counts_only_without_a_valid_key(client_factory):
    client = client_factory(api_keys=["key-a"], worker=True)
    wait_ready(client)
    job_id = client.post("/v1/jobs", json=small_job(iterations=5000), headers=KEY_A).json()["id"]
    job = wait_for(client, job_id, lambda job: job["status"] == "running", headers=KEY_A)
    for headers in ({}, {"X-API-Key": "wrong"}):
        body = client.get("/readyz", headers=headers).json()
        assert body["status"] == "ready" and body["workers_alive"] == 1 and body["running"] == 1
        assert "workers" not in body and job_id not in json.dumps(body)
    full = client.get("/readyz", headers=KEY_A).json()
    assert full["workers"][0]["jobs"] == [job["id"]]
    client.post(f"/v1/jobs/{job_id}/cancel", headers=KEY_A)
    wait_for(client, job_id, headers=KEY_A)
