"""artgen.jobs.job_files: what recovery sweeps from the jobs directory and drops from a record."""

from __future__ import annotations

import uuid
from pathlib import Path

from artgen.jobs.job_files import FINAL, PREVIEW, TEMP_SUFFIX, drop_missing_files, sweep_job_dirs
from artgen.jobs.schemas import Job, JobStatus


def test_orphan_dirs_and_temp_files_are_swept_and_noted(tmp_path: Path) -> None:
    known, orphan = str(uuid.uuid4()), str(uuid.uuid4())
    (tmp_path / known).mkdir()
    (tmp_path / known / FINAL).write_bytes(b"png")
    (tmp_path / known / f".{FINAL}.abc{TEMP_SUFFIX}").write_bytes(b"half")
    (tmp_path / orphan).mkdir()
    notes = sweep_job_dirs(tmp_path, {known})
    assert sorted(path.name for path in tmp_path.iterdir()) == [known]
    assert [path.name for path in (tmp_path / known).iterdir()] == [FINAL]
    assert len(notes) == 2


def test_a_succeeded_job_without_its_image_becomes_failed() -> None:
    job = Job(id=str(uuid.uuid4()), params={}, iterations=4, status=JobStatus.succeeded)
    job.image_file, job.preview_file, job.preview_iteration = FINAL, PREVIEW, 2
    drop_missing_files(job, lambda name: name == PREVIEW)
    assert job.image_file is None and job.preview_file == PREVIEW
    assert job.status == JobStatus.failed and job.error is not None
