"""The job resource end to end on the tiny models: lifecycle, files, SSE, cancel, delete."""

from __future__ import annotations

import io
import json

from apitools import assert_error, small_job, wait_for
from PIL import Image


def _parse_sse(lines):
    """(id, type, data) triples from SSE lines, stopping after `done`."""
    events = []
    current: dict = {}
    for line in lines:
        if line == "":
            if "event" in current:
                events.append((int(current["id"]), current["event"], json.loads(current["data"])))
                if current["event"] == "done":
                    break
            current = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(": ")
            current[name] = value
    return events


def _stream_events(client, job_id, headers=None, query=""):
    url = f"/v1/jobs/{job_id}/events{query}"
    with client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return _parse_sse(response.iter_lines())


def test_full_lifecycle_with_files_and_events(worker_client):
    client = worker_client
    response = client.post("/v1/jobs", json=small_job(video=True))
    assert response.status_code == 202, response.text
    job = response.json()
    job_id = job["id"]
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"
    assert job["status"] in ("queued", "running")
    assert job["params"]["model"] == "tiny" and job["seed"] == 1

    # The stream follows the job live until done.
    events = _stream_events(client, job_id)
    ids = [event_id for event_id, _, _ in events]
    types = [event_type for _, event_type, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert types[-1] == "done" and types.count("done") == 1
    assert "progress" in types and "status" in types and "preview" in types
    assert events[-1][2]["status"] == "succeeded"
    progress = [data for _, kind, data in events if kind == "progress"]
    assert progress[-1]["iteration"] == 4 and progress[-1]["iterations"] == 4

    # Resuming after an event id replays only what came after it.
    middle = ids[len(ids) // 2]
    resumed = _stream_events(client, job_id, headers={"Last-Event-ID": str(middle)})
    assert [event_id for event_id, _, _ in resumed] == [i for i in ids if i > middle]
    resumed = _stream_events(client, job_id, query=f"?last_event_id={ids[-2]}")
    assert [event_id for event_id, _, _ in resumed] == [ids[-1]]
    # A reconnect at (or past) the end replays `done` and the stream closes.
    for after in (ids[-1], ids[-1] + 100):
        resumed = _stream_events(client, job_id, headers={"Last-Event-ID": str(after)})
        assert [(event_id, kind) for event_id, kind, _ in resumed] == [(ids[-1], "done")]

    job = wait_for(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["iteration"] == 4 and job["progress"] == 1.0
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    assert job["urls"]["image"] == f"/v1/jobs/{job_id}/image"

    image = client.get(f"/v1/jobs/{job_id}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (32, 32)
    jpeg = client.get(f"/v1/jobs/{job_id}/image?format=jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"

    preview = client.get(f"/v1/jobs/{job_id}/preview")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert int(preview.headers["X-Iteration"]) >= 2
    preview = client.get(f"/v1/jobs/{job_id}/preview", params={"format": "jpeg"})
    assert preview.headers["content-type"] == "image/jpeg"
    assert_error(client.get(f"/v1/jobs/{job_id}/preview?format=gif"), 422, "validation_error")

    video = client.get(f"/v1/jobs/{job_id}/video")
    assert video.status_code == 200, video.text
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"

    # Delete removes record and files.
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert_error(client.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert_error(client.get(f"/v1/jobs/{job_id}/image"), 404, "not_found")
    assert_error(client.delete(f"/v1/jobs/{job_id}"), 404, "not_found")


def test_cancel_running_and_queued_jobs(worker_client):
    client = worker_client
    running = client.post("/v1/jobs", json=small_job(iterations=5000)).json()
    queued = client.post("/v1/jobs", json=small_job(iterations=5000, seed=2)).json()
    wait_for(client, running["id"], lambda job: job["status"] == "running" and job["iteration"])

    # Image and video are 409 until the job has finished.
    assert_error(client.get(f"/v1/jobs/{running['id']}/image"), 409, "not_finished")
    job = client.get(f"/v1/jobs/{queued['id']}").json()
    assert job["status"] == "queued" and job["queue_position"] == 0

    canceled = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    again = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "canceled"

    client.post(f"/v1/jobs/{running['id']}/cancel")
    job = wait_for(client, running["id"], timeout=30)
    assert job["status"] == "canceled" and job["iteration"] < 5000
    assert_error(client.get(f"/v1/jobs/{running['id']}/image"), 409, "not_finished")
    never = client.get(f"/v1/jobs/{queued['id']}").json()
    assert never["status"] == "canceled" and never["started_at"] is None
    events = _stream_events(client, running["id"])
    assert events[-1][1] == "done" and events[-1][2]["status"] == "canceled"


def test_list_filter_and_pagination(idle_client):
    client = idle_client
    ids = [client.post("/v1/jobs", json=small_job(seed=i)).json()["id"] for i in range(5)]
    client.post(f"/v1/jobs/{ids[1]}/cancel")

    page = client.get("/v1/jobs").json()
    assert page["total"] == 5 and page["limit"] == 20 and page["offset"] == 0
    assert [item["id"] for item in page["items"]] == ids[::-1]

    page = client.get("/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert [item["id"] for item in page["items"]] == [ids[3], ids[2]]
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1

    canceled = client.get("/v1/jobs", params={"status": "canceled"}).json()
    assert canceled["total"] == 1 and canceled["items"][0]["id"] == ids[1]
    queued = client.get("/v1/jobs", params={"status": "queued"}).json()
    assert queued["total"] == 4
    positions = {item["id"]: item["queue_position"] for item in queued["items"]}
    assert positions[ids[0]] == 0 and positions[ids[4]] == 3


def test_preview_before_the_first_is_404_json(idle_client):
    job_id = idle_client.post("/v1/jobs", json=small_job()).json()["id"]
    body = assert_error(idle_client.get(f"/v1/jobs/{job_id}/preview"), 404, "not_found")
    assert "no preview yet" in body["error"]["message"]
    assert_error(idle_client.get(f"/v1/jobs/{job_id}/image"), 409, "not_finished")
    assert_error(idle_client.get(f"/v1/jobs/{job_id}/video"), 404, "not_found")
    video_job = idle_client.post("/v1/jobs", json=small_job(video=True)).json()["id"]
    assert_error(idle_client.get(f"/v1/jobs/{video_job}/video"), 409, "not_finished")


def test_idempotency_key(idle_client):
    client = idle_client
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json=small_job(), headers=headers)
    second = client.post("/v1/jobs", json=small_job(), headers=headers)
    assert first.status_code == 202 and second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert client.get("/v1/jobs").json()["total"] == 1

    other = client.post("/v1/jobs", json=small_job(width=64), headers=headers)
    assert_error(other, 409, "idempotency_conflict")
    fresh = client.post("/v1/jobs", json=small_job(), headers={"Idempotency-Key": "order-43"})
    assert fresh.json()["id"] != first.json()["id"]
    too_long = client.post("/v1/jobs", json=small_job(), headers={"Idempotency-Key": "k" * 500})
    assert_error(too_long, 422, "validation_error", "Idempotency-Key")


def test_queue_full_is_503_with_retry_after(client_factory):
    client = client_factory(queue_limit=2)
    for _ in range(2):
        assert client.post("/v1/jobs", json=small_job()).status_code == 202
    response = client.post("/v1/jobs", json=small_job())
    assert_error(response, 503, "queue_full")
    assert int(response.headers["Retry-After"]) > 0
    assert client.get("/v1/jobs").json()["total"] == 2


def _succeeded_job(client):
    job_id = client.post("/v1/jobs", json=small_job()).json()["id"]
    assert wait_for(client, job_id)["status"] == "succeeded"
    return job_id


def test_files_gone_under_a_read_are_a_clean_404(worker_client):
    client = worker_client
    service = client.app.state.service
    job_id = _succeeded_job(client)
    # The DELETE removed the files after the record was read: the file is missing, not the record.
    job = service.get(job_id)
    for name in (job.image_file, job.preview_file):
        service.store.file_path(job_id, name).unlink()
    for suffix in ("/image", "/image?format=jpeg", "/preview", "/preview?format=jpeg"):
        body = assert_error(client.get(f"/v1/jobs/{job_id}{suffix}"), 404, "not_found")
        assert "deleted" in body["error"]["message"], suffix


def test_a_delete_between_the_record_and_the_file_is_a_clean_404(worker_client, monkeypatch):
    client = worker_client
    service = client.app.state.service
    for what, suffix in (("image_file", "/image"), ("preview_file", "/preview")):
        job_id = _succeeded_job(client)
        real = getattr(service, what)

        def racing(job_id, real=real):
            service.delete(job_id)
            return real(job_id)

        monkeypatch.setattr(service, what, racing)
        assert_error(client.get(f"/v1/jobs/{job_id}{suffix}"), 404, "not_found")
        monkeypatch.undo()


def test_a_file_deleted_while_it_streams_is_sent_whole(worker_client, monkeypatch):
    from artgen.api.routes import job_files as job_routes

    client = worker_client
    service = client.app.state.service
    job_id = _succeeded_job(client)
    path = service.store.file_path(job_id, service.get(job_id).image_file)
    expected = path.read_bytes()
    real_open = job_routes.open_stored_file

    def open_then_delete(*args):
        handle = real_open(*args)
        service.delete(job_id)
        return handle

    monkeypatch.setattr(job_routes, "open_stored_file", open_then_delete)
    response = client.get(f"/v1/jobs/{job_id}/image")
    assert response.status_code == 200
    assert response.content == expected
    assert int(response.headers["content-length"]) == len(expected)
    assert not path.exists()


def test_cancel_of_a_running_job_says_it_is_pending(worker_client):
    client = worker_client
    job_id = client.post("/v1/jobs", json=small_job(iterations=5000)).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["cancel_requested"] is False
    wait_for(client, job_id, lambda job: job["status"] == "running")
    body = client.post(f"/v1/jobs/{job_id}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] is True
    job = wait_for(client, job_id)
    assert job["status"] == "canceled"


def test_preview_of_an_ended_job_says_it_ended(idle_client):
    job_id = idle_client.post("/v1/jobs", json=small_job()).json()["id"]
    idle_client.post(f"/v1/jobs/{job_id}/cancel")
    body = assert_error(idle_client.get(f"/v1/jobs/{job_id}/preview"), 409, "job_ended")
    assert "canceled" in body["error"]["message"]
    assert "retry" not in body["error"]["message"]
