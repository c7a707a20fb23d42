"""The names of the queue storage's keys: per attempt, per job and per worker."""

from __future__ import annotations


class Keys:
    """Every key of the queue's key-value storage (values are pickled dicts).

    Per job and attempt, so that a stale attempt can never overwrite the current one's reports
    (each a jobs/reports.py report, stored as reports.encode writes it):
      claim      Sign: put_if_empty, so each (job, attempt) runs at most once
      heartbeat  Sign: refreshed by the worker while it runs the attempt
      progress   Progress
      preview    Preview: the latest preview, popped by the collector
      checkpoint Checkpoint: the resume state (torch.save bytes), popped by the collector
      result     Result: succeeded, failed, canceled or interrupted (handed back)
      inputs     {init_image?, image_prompts?, checkpoint?, source_video?}: the attempt's input
                 bytes, read by the worker that runs it (the task message carries only the params)
      frame      Frame: one finished frame of an animation (one key per index,
                 written before the checkpoint that counts it), popped by the collector in order
    Per job:
      control    {attempt, cancel, deleted}: the current attempt and the cancel flag; once the job
                 ended or was deleted, a stop signal the collector's audit clears with the rest
    Workers:
      worker_seq counter handing out registration slots; worker:<slot> is WorkerInfo as a dict
    """

    PREFIX = "artgen"
    WORKER_SEQ = f"{PREFIX}:worker-seq"
    ATTEMPT_KINDS = ("claim", "heartbeat", "progress", "preview", "checkpoint", "result")

    @classmethod
    def attempt_key(cls, kind: str, job_id: str, attempt: int) -> str:
        """Key of one per-attempt report."""
        if kind not in cls.ATTEMPT_KINDS:
            raise ValueError(f"unknown report kind {kind!r}")
        return f"{cls.PREFIX}:{kind}:{job_id}:{int(attempt)}"

    @classmethod
    def claim(cls, job_id: str, attempt: int) -> str:
        """Who runs this attempt."""
        return cls.attempt_key("claim", job_id, attempt)

    @classmethod
    def heartbeat(cls, job_id: str, attempt: int) -> str:
        """The attempt's liveness."""
        return cls.attempt_key("heartbeat", job_id, attempt)

    @classmethod
    def progress(cls, job_id: str, attempt: int) -> str:
        """Latest progress of the attempt."""
        return cls.attempt_key("progress", job_id, attempt)

    @classmethod
    def preview(cls, job_id: str, attempt: int) -> str:
        """Latest preview PNG of the attempt."""
        return cls.attempt_key("preview", job_id, attempt)

    @classmethod
    def checkpoint(cls, job_id: str, attempt: int) -> str:
        """Latest checkpoint of the attempt."""
        return cls.attempt_key("checkpoint", job_id, attempt)

    @classmethod
    def result(cls, job_id: str, attempt: int) -> str:
        """Final outcome of the attempt."""
        return cls.attempt_key("result", job_id, attempt)

    @classmethod
    def inputs(cls, job_id: str, attempt: int) -> str:
        """The attempt's input bytes (not an ATTEMPT_KINDS report: the collector never polls it)."""
        return f"{cls.PREFIX}:inputs:{job_id}:{int(attempt)}"

    @classmethod
    def frame(cls, job_id: str, attempt: int, index: int) -> str:
        """One finished animation frame of the attempt (not polled with ATTEMPT_KINDS)."""
        return f"{cls.PREFIX}:frame:{job_id}:{int(attempt)}:{int(index)}"

    @classmethod
    def control(cls, job_id: str) -> str:
        """The job's current attempt and cancel flag."""
        return f"{cls.PREFIX}:control:{job_id}"

    @classmethod
    def worker(cls, slot: int) -> str:
        """A worker's registration."""
        return f"{cls.PREFIX}:worker:{int(slot)}"
