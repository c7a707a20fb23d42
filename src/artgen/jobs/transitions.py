"""A job's state machine on the API side: terminal states and requeues, with their cleanup.

JobTransitions records a terminal status (files, events, the checkpoint dropped, the queue's
keys cleared or a stop signal left) and hands a job to a new attempt (resuming from its
checkpoint, within max_attempts). The collector, the service and the audit call it.
"""

from __future__ import annotations

import logging

from artgen.config import Settings
from artgen.jobs.events import Events, progress_event, status_events
from artgen.jobs.frames import clear_frame_keys, video_files
from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.schemas import Job, JobError, JobStatus, utcnow
from artgen.jobs.store import VIDEO, JobStore
from artgen.jobs.submission import enqueue_job

logger = logging.getLogger("artgen.jobs.collector")


class JobTransitions:
    """Moves a job to a terminal state or to its next attempt."""

    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue

    def finish(
        self,
        job_id: str,
        attempt: int,
        status: JobStatus,
        error: JobError | None = None,
        *,
        reported: bool = False,
        iteration: int | None = None,
        seed: int | None = None,
        files: dict[str, str] | None = None,
        animated: bool | None = None,
    ) -> Job | None:
        """Record a terminal status, then drop the checkpoint file and the queue's keys.

        Without the worker's result (`reported` False: timeout, worker lost, canceled meanwhile)
        the attempt may still be running somewhere: the control key stays as a stop signal,
        which the audit removes once no worker can act on it. An animation that succeeded or was
        canceled gets its MP4 from the frames so far (see ReportCollector: off the poll thread);
        `animated` False (a picture) skips looking."""
        files = dict(files or {})
        ending = status in (JobStatus.succeeded, JobStatus.canceled)
        if ending and animated is not False and "video_file" not in files:
            files.update(video_files(self.store, job_id, VIDEO))
        checkpoint: list[str] = []

        def mutate(current: Job) -> Events | None:
            if current.attempt != attempt or current.status.terminal:
                return None
            current.status = status
            current.error = error
            current.finished_at = utcnow()
            current.eta_seconds = None
            for name, value in files.items():
                setattr(current, name, value)
            if seed is not None:
                current.seed = seed
            events: Events = []
            if status == JobStatus.succeeded:
                current.iteration = current.iterations
                events.append(progress_event(current))
            elif iteration is not None:
                current.iteration = iteration
            if current.checkpoint_file:
                checkpoint.append(current.checkpoint_file)
                current.checkpoint_file, current.checkpoint_iteration = None, None
            return events + status_events(current)

        job = self.store.update(job_id, mutate)
        if job is None:
            self.store.remove_dir(job_id)
        for name in checkpoint:
            self.store.remove_file(job_id, name)
        if job is not None and job.kind.animated:
            clear_frame_keys(self.queue, job_id, attempt, job.frames_done)
        try:
            self.queue.clear_job(job_id, attempt, keep_control=not reported)
            if not reported:
                self.queue.set_control(job_id, attempt, cancel=True, deleted=job is None)
        except Exception:
            # The store recorded the cleanup: the audit clears the keys once the queue is back.
            logger.warning("job %s: queue keys not cleared yet", job_id)
        return job

    def lost(self, job_id: str, attempt: int) -> None:
        """The attempt's worker went silent: requeue, or fail with worker_lost."""
        logger.warning("job %s attempt %s: worker lost", job_id, attempt)
        self.requeue(job_id, attempt, count_as_lost=True)

    def requeue(self, job_id: str, attempt: int, *, count_as_lost: bool) -> Job | None:
        """Hand the job to a new attempt (resuming from its checkpoint), within max_attempts."""
        job = self.store.get(job_id)
        if job is None or job.attempt != attempt or job.status.terminal:
            return job
        if job.cancel_requested:
            return self.finish(job_id, attempt, JobStatus.canceled)
        if count_as_lost and job.attempt >= self.settings.max_attempts:
            message = f"the worker stopped answering {job.attempt} times; giving up"
            error = JobError(code="worker_lost", message=message)
            return self.finish(job_id, attempt, JobStatus.failed, error)

        def mutate(current: Job) -> Events | None:
            if current.attempt != attempt or current.status.terminal:
                return None
            current.attempt += 1
            current.status = JobStatus.queued
            current.enqueued_at = utcnow()
            current.worker_id, current.eta_seconds, current.start_iteration = None, None, None
            # The next attempt continues from the checkpoint: progress says so.
            current.iteration = current.checkpoint_iteration or 0
            if current.kind.animated:
                # It remakes the frames after its checkpoint's (their files are overwritten).
                current.frames_done = min(current.frames_done, current.checkpoint_frame or 0)
                current.frame, current.start_frame = current.frames_done, None
            return status_events(current)

        job = self.store.update(job_id, mutate)
        if job is None or job.attempt == attempt:
            return job
        # Publish the new attempt first: a late worker of the old one then stops by itself.
        enqueue_job(self.queue, self.store, job)
        if job.kind.animated:
            clear_frame_keys(self.queue, job_id, attempt, job.frames_done)
        logger.info("job %s requeued as attempt %s", job_id, job.attempt)
        try:
            self.queue.delete(Keys.inputs(job_id, attempt))  # the new attempt has its own copy
        except Exception:
            logger.warning("job %s: inputs of attempt %s not removed", job_id, attempt)
        return job

    def enqueue_again(self, job: Job) -> None:
        """A queued job whose task is not in the queue: enqueue it again."""
        logger.warning("job %s attempt %s was not in the queue: enqueued", job.id, job.attempt)
        enqueue_job(self.queue, self.store, job)
