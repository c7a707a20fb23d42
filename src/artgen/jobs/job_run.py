"""One attempt of a job inside a worker: its Generation and what it reports through the queue.

A worker steps one or more JobRuns together (see Worker._run_batch); each keeps its own params,
seed, optimiser state, deadline, report throttle and timelapse (streamed to ffmpeg as it comes).
"""

from __future__ import annotations

import io
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image

from artgen.engine.generate import Generation, StepResult, tensors_to_cpu
from artgen.engine.images import to_pixels
from artgen.jobs.control import StopReason, timeout_result
from artgen.jobs.queue import Keys
from artgen.jobs.reports import Checkpoint, Outcome, Preview, Progress, Report, Result, Sign
from artgen.jobs.schemas import JobCreate
from artgen.jobs.task_inputs import TaskInputs
from artgen.media import Mp4Recording, png_text
from artgen.media import encode_png as png_bytes
from artgen.models.loading import Models

logger = logging.getLogger("artgen.jobs.worker")

# Progress reports are throttled to this interval (and forced at previews and the end).
PROGRESS_INTERVAL_S = 0.1
VIDEO_FPS = 10
# Previews are PNGs for the browser, rewritten every few iterations: fast zlib, not small files.
PREVIEW_PNG_LEVEL = 1
# Timelapse frames waiting for the encoder thread at most; the loop waits for the oldest beyond.
MAX_PENDING_FRAMES = 8

# A lossy report: put(key, report) -> whether it reached the queue.
Put = Callable[[str, Report], bool]


@dataclass
class HostCopy:
    """A tensor on its way from the device to the host, readable once `ready` has fired.

    On CUDA the copy goes to pinned memory without blocking the generation loop, and whoever
    reads it (the encoder thread, a later progress report) waits for it; a CPU tensor is there.
    """

    tensor: torch.Tensor
    ready: torch.cuda.Event | None = None

    @classmethod
    def start(cls, tensor: torch.Tensor) -> HostCopy:
        """Start copying `tensor` to the host."""
        tensor = tensor.detach()
        if tensor.device.type != "cuda":
            return cls(tensor.contiguous())
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return cls(host, ready)

    def done(self) -> bool:
        """Whether the copy has arrived (never waits)."""
        return self.ready is None or self.ready.query()

    def wait(self) -> torch.Tensor:
        """The host tensor, once copied."""
        if self.ready is not None:
            self.ready.synchronize()
        return self.tensor


def host_image(image: torch.Tensor) -> HostCopy:
    """Start copying a (1, 3, H, W) image in [0, 1] to the host as (H, W, 3) uint8."""
    return HostCopy.start(to_pixels(image))


def pil_image(pixels: HostCopy) -> Image.Image:
    """The PIL image of a host_image() copy (waits for it)."""
    return Image.fromarray(pixels.wait().numpy(), mode="RGB")


def _done(action: Callable[[], None]) -> Future[None]:
    """Run `action` now; a finished Future (the encoder=None case)."""
    future: Future[None] = Future()
    action()
    future.set_result(None)
    return future


def _frame(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


@dataclass
class JobRun:
    """A job's attempt being generated: the Generation plus its reporting state."""

    job_id: str
    attempt: int
    request: JobCreate
    generation: Generation
    put: Put
    sign: Callable[[], Sign]
    deadline: float  # time.monotonic() after which the attempt fails with `timeout`
    checkpoint_every: int
    first_iteration: int = 0
    started: float = field(default_factory=time.monotonic)
    last_report: float = 0.0
    # The timelapse (video: true), fed by the encoder thread; frames handed to it, oldest first.
    video: Mp4Recording | None = None
    _frames: deque[Future[None]] = field(default_factory=deque)
    _video_error: BaseException | None = None
    # Where previews are encoded and published (a worker's one encoder thread); None: right here.
    encoder: Executor | None = None
    _preview: Future[None] | None = None  # the latest preview handed to the encoder
    _checkpoint: Future[None] | None = None  # the latest checkpoint handed to it
    _last: Future[None] | None = None  # the latest of either (the encoder runs them in order)
    _loss: HostCopy | None = None  # the latest loss on its way to the host
    _known_loss: float | None = None  # the newest loss that arrived

    @classmethod
    def start(
        cls,
        job_id: str,
        attempt: int,
        payload: Mapping[str, Any],
        models: Models,
        *,
        device: torch.device,
        put: Put,
        sign: Callable[[], Sign],
        timeout_seconds: float,
        checkpoint_every: int,
        encoder: Executor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> JobRun:
        """Build the Generation (resuming from the payload's checkpoint) and report iteration 0.

        `should_stop` is asked during the setup (prompt embeddings): SetupStopped when it says so.
        """
        request = JobCreate.model_validate(payload["params"])
        inputs = TaskInputs.of(payload)
        generation = Generation(
            models,
            request.generation_params(),
            device=device,
            init_image=inputs.init_image,
            image_prompts=inputs.image_prompts,
            should_stop=should_stop,
        )
        if inputs.resume_state is not None:
            generation.load_state_dict(inputs.resume_state)
        started = time.monotonic()
        run = cls(
            job_id=job_id,
            attempt=attempt,
            request=request,
            generation=generation,
            put=put,
            sign=sign,
            deadline=started + timeout_seconds,
            checkpoint_every=checkpoint_every,
            first_iteration=generation.iteration,
            started=started,
            encoder=encoder,
            video=Mp4Recording(VIDEO_FPS) if request.video else None,
        )
        run.report_progress(None)
        return run

    @property
    def iterations(self) -> int:
        """Iterations the job asked for."""
        return self.request.iterations

    @property
    def finished(self) -> bool:
        """True once every iteration is done."""
        return self.generation.iteration >= self.iterations

    @property
    def pixels(self) -> int:
        """Output pixels: what the worker's batch budget counts."""
        return self.generation.width * self.generation.height

    @property
    def size(self) -> tuple[int, int]:
        """Output (width, height): jobs of one size step together."""
        return self.generation.width, self.generation.height

    @property
    def vqgan_factor(self) -> int:
        """How much the VQGAN upsamples its latent (sizes round to a multiple of it)."""
        return int(self.generation.models.vqgan.factor)

    def report_progress(self, loss: float | None) -> None:
        """Publish iteration, loss and ETA (the ETA from this attempt's own pace)."""
        iteration = self.generation.iteration
        done = iteration - self.first_iteration
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.iterations - iteration) if done > 0 else None
        sign = self.sign()
        progress = Progress(
            attempt=self.attempt,
            iteration=iteration,
            worker_id=sign.worker_id,
            time=sign.time,
            iterations=self.iterations,
            loss=loss,
            eta_seconds=eta,
            seed=self.generation.seed,
            start_iteration=self.first_iteration,
            **self.progress_fields(),
        )
        self.put(Keys.progress(self.job_id, self.attempt), progress)

    def progress_fields(self) -> dict[str, int | None]:
        """What a kind of attempt adds to its Progress reports (an animation: its frame)."""
        return {}

    def after_step(self, result: StepResult) -> None:
        """Progress (throttled), previews (and video frames) and checkpoints due at this step."""
        iteration = result.iteration
        is_preview = iteration % self.request.preview_every == 0 or iteration == self.iterations
        now = time.monotonic()
        if is_preview or now - self.last_report >= PROGRESS_INTERVAL_S:
            self.report_progress(self._latest_loss(result.loss, iteration == self.iterations))
            self.last_report = now
        if is_preview:
            self._preview_at(iteration)
        if iteration % self.checkpoint_every == 0 and iteration < self.iterations:
            self.checkpoint(force=False)

    def _latest_loss(self, loss: torch.Tensor, last: bool) -> float | None:
        """The newest loss that has reached the host, without waiting for the device (the last
        iteration's loss is waited for): on CUDA a report shows a loss one report old."""
        if last:
            return float(loss)
        if self._loss is not None and self._loss.done():
            self._known_loss = float(self._loss.wait())
        self._loss = HostCopy.start(loss)
        if self._loss.done():  # a CPU tensor: there already
            self._known_loss = float(self._loss.wait())
            self._loss = None
        return self._known_loss

    def _preview_at(self, iteration: int) -> None:
        """Decode the preview on the device; copy, encode and publish it off the loop.

        While the previous preview is still being encoded this one is skipped (a newer one comes
        soon), except the last; timelapse frames are never skipped.
        """
        busy = self._preview is not None and not self._preview.done()
        skip = busy and iteration != self.iterations
        if skip and not self.request.video:
            return
        image = host_image(self.generation.image_tensor())
        if self.video is not None:
            self._queue_frame(image)
        if not skip:
            self._preview = self._submit(partial(self._publish_preview, iteration, image))

    def _queue_frame(self, image: HostCopy) -> None:
        """Hand a timelapse frame to the encoder thread; past MAX_PENDING_FRAMES waiting, wait
        for the oldest, so frames never pile up in memory."""
        while self._frames and self._frames[0].done():
            self._frames.popleft()
        if len(self._frames) >= MAX_PENDING_FRAMES:
            wait([self._frames.popleft()])
        self._frames.append(self._submit(partial(self._write_frame, image)))

    def _write_frame(self, image: HostCopy) -> None:
        if self._video_error is not None or self.video is None:
            return
        try:
            self.video.append(_frame(pil_image(image)))
        except Exception as exc:
            logger.warning("job %s: timelapse frame not written", self.job_id, exc_info=True)
            self._video_error = exc

    def _publish_preview(self, iteration: int, image: HostCopy) -> None:
        try:
            png = png_bytes(pil_image(image), compress_level=PREVIEW_PNG_LEVEL)
        except Exception:
            logger.warning("job %s: preview %s not encoded", self.job_id, iteration, exc_info=True)
            return
        preview = Preview(self.attempt, iteration, png)
        self.put(Keys.preview(self.job_id, self.attempt), preview)

    def _submit(self, action: Callable[[], None]) -> Future[None]:
        """Hand `action` to the encoder thread (or run it now without one)."""
        self._last = self.encoder.submit(action) if self.encoder else _done(action)
        return self._last

    def drain(self) -> None:
        """Wait until what was handed to the encoder is published (before the result goes out)."""
        if self._last is not None:
            wait([self._last])  # the publishers log their own errors; this never raises
            self._last = None
        self._frames.clear()

    def close(self) -> None:
        """Drop what the attempt still holds outside memory (an unfinished timelapse file)."""
        self.drain()
        if self.video is not None:
            self.video.discard()

    def checkpoint(self, force: bool = True) -> None:
        """Publish the generation's state; a later attempt resumes from it.

        The state is copied on the device now; the encoder thread moves it to the host,
        serialises and publishes it. A periodic checkpoint (force=False) is skipped while the
        previous one is still being written: the next one comes soon.
        """
        if not force and self._checkpoint is not None and not self._checkpoint.done():
            return
        try:
            snapshot = self.generation.snapshot()
        except Exception:
            # A broken device (right after an OOM, say): the previous checkpoint stays.
            logger.warning("job %s: no checkpoint taken", self.job_id, exc_info=True)
            return
        self._checkpoint = self._submit(partial(self._publish_checkpoint, snapshot))

    def _publish_checkpoint(self, snapshot: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        try:
            torch.save(tensors_to_cpu(snapshot), buffer)
        except Exception:
            # The previous checkpoint stays the one to resume from.
            logger.warning("job %s: checkpoint not written", self.job_id, exc_info=True)
            return
        frame = snapshot.get("frame")  # an animation's frames finished at it
        checkpoint = Checkpoint(
            self.attempt,
            int(snapshot["iteration"]),
            buffer.getvalue(),
            None if frame is None else int(frame),
        )
        self.put(Keys.checkpoint(self.job_id, self.attempt), checkpoint)

    def result(self) -> Result:
        """The final result: the PNG with its metadata, and the timelapse when asked for."""
        seed = self.generation.seed
        # The record's params name the models used (completed at submit): --params-from reruns it.
        metadata = png_text(self.request.model_dump(mode="json"), seed)
        png = png_bytes(self.generation.image(), metadata)
        mp4: bytes | None = None
        if self.video is not None:
            self.drain()  # every frame handed to the encoder thread is in the file
            if self._video_error is not None:
                raise RuntimeError("the timelapse could not be encoded") from self._video_error
            mp4 = self.video.finish() or None
        return Result(
            self.attempt,
            Outcome.succeeded,
            iteration=self.generation.iteration,
            seed=seed,
            png=png,
            mp4=mp4,
        )

    def stopped(self, reason: StopReason, timeout_seconds: float) -> Result | None:
        """The result of an attempt stopped early; None when another attempt owns the job."""
        iteration = self.generation.iteration
        if reason == StopReason.canceled:
            return Result(self.attempt, Outcome.canceled, iteration=iteration)
        if reason == StopReason.timeout:
            return timeout_result(self.attempt, timeout_seconds)
        if reason == StopReason.shutdown:
            # Hand the job back: the collector requeues it and it resumes from here.
            self.checkpoint()
            return Result(self.attempt, Outcome.interrupted, iteration=iteration)
        return None  # superseded
