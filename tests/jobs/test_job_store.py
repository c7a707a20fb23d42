"""JobStore: atomic file writes, records, events, idempotency keys and startup recovery."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from artgen.jobs.job_files import FINAL, PREVIEW, TEMP_SUFFIX, validate_job_id, write_file_atomic
from artgen.jobs.schemas import Job, JobStatus
from artgen.jobs.store import JobStore


def make_job(**fields: object) -> Job:
    return Job(id=str(uuid.uuid4()), params={"prompts": "x"}, iterations=10, **fields)


def test_write_file_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "dir" / "image.png"
    write_file_atomic(target, b"first")
    write_file_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [path.name for path in target.parent.iterdir()] == ["image.png"]


def test_write_file_atomic_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "image.png"
    write_file_atomic(target, b"good")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_file_atomic(target, b"partial")
    assert target.read_bytes() == b"good"
    assert [path.name for path in tmp_path.iterdir()] == ["image.png"]


def test_job_ids_must_be_uuids(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    for bad in ("../../etc/passwd", "abc", ""):
        with pytest.raises(ValueError, match="not a UUID"):
            store.job_dir(bad)
    with pytest.raises(ValueError):
        store.file_path(str(uuid.uuid4()), "../x")
    job_id = str(uuid.uuid4())
    assert validate_job_id(job_id.upper()) == job_id


def test_records_events_and_listing(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    first, second = make_job(owner="a"), make_job(owner="b")
    store.create(first, [("status", {"status": "queued"})])
    store.create(second, [("status", {"status": "queued"})], idempotency=("key", "body"))
    store.update(first.id, lambda job: [("progress", {"iteration": 1})])
    events = store.events(first.id)
    assert [event.type for event in events] == ["status", "progress"]
    assert events[0].id < events[1].id
    assert store.events(first.id, after=events[0].id) == events[1:]

    jobs, total = store.list_jobs()
    assert total == 2 and [job.id for job in jobs] == [second.id, first.id]
    jobs, total = store.list_jobs(owner="a")
    assert total == 1 and jobs[0].id == first.id
    assert store.idempotent_job("key") == (second.id, "body")
    assert store.queued_ahead(second) == 1 and store.queued_ahead(first) == 0

    assert store.delete(second.id)
    assert store.get(second.id) is None and store.idempotent_job("key") is None
    assert store.events(second.id) == []

    # Records survive a reopen (the database is on disk).
    store.close()
    reopened = JobStore(tmp_path)
    assert reopened.get(first.id) is not None


def test_recover_removes_temp_files_orphans_and_dangling_names(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    running = make_job(status=JobStatus.running)
    done = make_job(status=JobStatus.succeeded)
    for job in (running, done):
        store.create(job)
    store.write_file(running.id, PREVIEW, b"png")
    store.update(running.id, lambda job: setattr(job, "preview_file", PREVIEW))
    # A crash mid-write leaves a temp file; a crash before the insert leaves an orphan dir.
    stray = store.job_dir(running.id) / f".final.png.123{TEMP_SUFFIX}"
    stray.write_bytes(b"half")
    orphan = store.job_dir(str(uuid.uuid4()))
    orphan.mkdir()
    (orphan / "input.png").write_bytes(b"x")
    # A record pointing at a file that is not there.
    store.update(done.id, lambda job: setattr(job, "image_file", FINAL))

    notes = store.recover()

    assert notes
    assert not stray.exists() and not orphan.exists()
    assert store.file_path(running.id, PREVIEW).read_bytes() == b"png"
    assert store.get(running.id).preview_file == PREVIEW
    lost = store.get(done.id)
    assert lost.image_file is None and lost.status == JobStatus.failed
    assert store.recover() == []


def test_ended_and_deleted_jobs_owe_a_queue_cleanup(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    ends, runs = make_job(), make_job(status=JobStatus.running)
    done = make_job(status=JobStatus.succeeded)
    for job in (ends, runs, done):
        store.create(job)

    def cancel(job: Job) -> None:
        job.status = JobStatus.canceled

    store.update(ends.id, cancel)
    store.update(ends.id, cancel)  # terminal already: no second cleanup
    [owed] = store.queue_cleanups()
    assert (owed.job_id, owed.attempt, owed.deleted) == (ends.id, 1, False)

    # Of two deletes one gets the job; a deleted active job owes a cleanup marked deleted.
    removed = store.delete(runs.id)
    assert removed is not None and removed.status == JobStatus.running
    assert store.delete(runs.id) is None
    # A job whose cleanup is pending keeps owing it, now marked deleted.
    assert store.delete(ends.id) is not None
    owed_by = {cleanup.job_id: cleanup for cleanup in store.queue_cleanups()}
    assert set(owed_by) == {ends.id, runs.id}
    assert owed_by[runs.id].deleted and owed_by[ends.id].deleted

    # A job that ended and was cleaned up (or never reached the queue) owes nothing.
    store.cleanup_done(owed_by[ends.id])
    assert store.delete(done.id) is not None
    assert [cleanup.job_id for cleanup in store.queue_cleanups()] == [runs.id]
