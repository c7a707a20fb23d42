"""API side of animations: finished frames from the queue to files, and the MP4 made of them.

Frames arrive under one queue key each (Keys.frame) and are taken strictly in order from the
job's `frames_done`, so the files frame-00000.png .. frame-<done-1>.png are always complete; the
latest one is also the job's preview. The MP4 is encoded from those files, streamed one frame at
a time (memory stays flat however many frames), when the job succeeds or is canceled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artgen.jobs.queue import JobQueue, Keys
from artgen.jobs.reports import decode_frame
from artgen.jobs.schemas import Job, JobKind
from artgen.jobs.store import PREVIEW, JobStore, frame_file_name
from artgen.media import write_mp4

logger = logging.getLogger("artgen.jobs.collector")

# Frame keys looked at in one round trip.
FRAME_BATCH = 16

Events = list[tuple[str, dict[str, Any]]]


def collect_frames(queue: JobQueue, store: JobStore, job: Job) -> Job:
    """Write the attempt's finished frames that wait in the queue, in order from frames_done,
    record them (with a `frame` event each, and the latest as the preview), then drop their keys.

    A frame that cannot be written stays in the queue and is tried again at the next poll.
    """
    while True:
        start = job.frames_done
        keys = [
            Keys.frame(job.id, job.attempt, index) for index in range(start, start + FRAME_BATCH)
        ]
        found = queue.peek_many(keys)
        written: list[int] = []
        latest: bytes | None = None
        for index, key in enumerate(keys, start):
            frame = decode_frame(found.get(key), job.attempt)
            if frame is None:
                break
            try:
                store.write_file(job.id, frame_file_name(index), frame.png)
            except OSError as exc:
                logger.warning("job %s: frame %s not saved (%s)", job.id, index, exc)
                break
            written.append(index)
            latest = frame.png
        if latest is None:
            return job
        try:
            store.write_file(job.id, PREVIEW, latest)
        except OSError as exc:
            logger.warning("job %s: preview not saved (%s)", job.id, exc)
        updated = _record_frames(store, job, written)
        for index in written:
            queue.delete(keys[index - start])
        if updated is None:
            store.remove_dir(job.id)  # deleted meanwhile: what we wrote goes too
            return job
        job = updated
        if len(written) < FRAME_BATCH:
            return job


def _record_frames(store: JobStore, job: Job, written: list[int]) -> Job | None:
    attempt, first, last = job.attempt, written[0], written[-1]

    def mutate(current: Job) -> Events | None:
        if current.attempt != attempt or current.frames_done != first:
            return None
        current.frames_done = last + 1
        current.preview_file = PREVIEW
        current.preview_iteration = current.iteration
        events: Events = [
            ("frame", {"frame": index, "frames": current.frames}) for index in written
        ]
        events.append(("preview", {"iteration": current.iteration}))
        return events

    return store.update(job.id, mutate)


def frame_pixels(store: JobStore, job: Job) -> Iterator[Any]:
    """The job's finished frames as RGB uint8 arrays (H, W, 3), read one at a time."""
    for index in range(job.frames_done):
        with Image.open(store.file_path(job.id, frame_file_name(index))) as image:
            yield np.asarray(image.convert("RGB"), dtype=np.uint8)


def video_fps(job: Job) -> float:
    """The MP4's frame rate: a restyle keeps its source's, an animation has its `fps`."""
    if job.source_fps is not None:
        return job.source_fps
    return float(job.params.get("fps") or 12)


def assemble_video(store: JobStore, job: Job, name: str) -> bool:
    """Encode the job's frames as the MP4 `name` (a restyle with its source's audio); write_mp4
    writes a temp file and renames it, so no partial video is ever served. False without frames."""
    if job.frames_done <= 0:
        return False
    audio: Path | None = None
    if job.kind == JobKind.restyle and job.source_video_file:
        audio = store.file_path(job.id, job.source_video_file)
    path = store.file_path(job.id, name)
    return write_mp4(frame_pixels(store, job), path, video_fps(job), audio_from=audio) > 0


def frames_on_disk(queue: JobQueue, store: JobStore, job: Job, frames: int) -> bool:
    """Whether frames 0..frames-1 of the job's attempt are on disk; the frames a fresh checkpoint
    counts were sent before it, so they are collected now (a checkpoint may only count frames on
    disk, or a resumed attempt would skip the missing ones)."""
    current = store.get(job.id)
    if current is None or current.attempt != job.attempt:
        return False
    if current.frames_done < frames:
        current = collect_frames(queue, store, current)
    if current.frames_done < frames:
        logger.warning("job %s: a checkpoint at frame %s came before its frames", job.id, frames)
    return current.frames_done >= frames


def video_files(store: JobStore, job_id: str, name: str) -> dict[str, str]:
    """{"video_file": name} once an active animation's frames so far are encoded as its MP4
    (it is ending: succeeded or canceled); {} for a picture, or without frames."""
    current = store.get(job_id)
    if current is None or not current.kind.animated or current.status.terminal:
        return {}
    try:
        if assemble_video(store, current, name):
            return {"video_file": name}
    except Exception:
        logger.error("job %s: the video could not be assembled", job_id, exc_info=True)
    return {}


def clear_frame_keys(queue: JobQueue, job_id: str, attempt: int, start: int) -> None:
    """Drop the frame keys of an attempt no one collects any more (from frame `start` on)."""
    try:
        queue.clear_frames(job_id, attempt, start)
    except Exception:
        logger.warning("job %s: frame keys of attempt %s not cleared", job_id, attempt)
