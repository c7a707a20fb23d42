"""Settings for the service, the worker and the CLI (environment variables prefixed ARTGEN_)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from artgen.videos import VideoLimits

# VQGAN names whose CLIP of the same name is their default critic (no download either way).
PAIRED_MODELS = ("tiny", "demo")


def default_home() -> Path:
    """Model cache: $XDG_CACHE_HOME/artgen or ~/.cache/artgen."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "artgen"


class Settings(BaseSettings):
    """Everything configurable; each field reads ARTGEN_<NAME> from the environment."""

    model_config = SettingsConfigDict(env_prefix="ARTGEN_", extra="ignore")

    # Where model weights are cached (ARTGEN_HOME).
    home: Path = Field(default_factory=default_home)
    # Job records, images, checkpoints and the embedded queue live here.
    data_dir: Path = Path("artgen-data")
    # Queue engine URL: sqlite:///path (embedded, default under data_dir) or redis://host:port/db.
    queue_url: str | None = None
    # Default models for jobs that do not name their own.
    model: str = "wikiart_16384"
    # None: the VQGAN's own CLIP for "tiny" and "demo" (so `--model demo` selects both), else
    # ViT-B-32/openai.
    clip_model: str | None = None
    # "auto" picks cuda when available, else cpu.
    device: str = "auto"
    # Run a worker inside `artgen serve` (the embedded default); off on a pure API host.
    worker: bool = True
    # Run that worker as a spawned child process: the API's requests then cost it no GIL time.
    worker_process: bool = False
    # Same-size jobs a worker steps together in one batch (0: 8 on CUDA, 1 on a CPU) ...
    batch_jobs: int = Field(0, ge=0, le=64)
    # ... up to this many output pixels in all (one job of any size always runs).
    batch_pixels: int = Field(1024 * 1024, ge=1)
    # Model sets (VQGAN + CLIP models) a worker keeps loaded, its default set included and never
    # evicted; the least recently used other set goes first, so no job pins memory for good.
    model_cache_size: int = Field(2, ge=1, le=64)

    host: str = "127.0.0.1"
    port: int = 8000
    # Comma-separated API keys; empty means no authentication.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Comma-separated CORS origins; empty means CORS is off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    max_upload_bytes: int = 20 * 1024 * 1024
    # Decompression-bomb guard, checked on the header before decoding.
    max_image_pixels: int = 4096 * 4096
    max_prompt_chars: int = 2000
    max_size: int = 2048
    max_iterations: int = 10_000
    # Queued + running jobs accepted before POST answers 503.
    queue_limit: int = 100
    # Generation state is checkpointed every N iterations so a crash resumes, not restarts.
    checkpoint_every: int = 10
    # A running job whose worker has been silent this long is requeued.
    lease_seconds: float = 30.0
    max_attempts: int = 3
    # A job running longer than this fails with `timeout`.
    job_timeout_seconds: float = 3600.0
    # Per-key limits (0 = unlimited).
    rate_limit_per_minute: int = 0
    max_active_jobs_per_key: int = 0
    # Restyle uploads (source_video): checked on the header and while decoding, before storing.
    # None: max_upload_bytes (a larger value also raises the cap on a whole request body).
    video_max_bytes: int | None = Field(None, ge=1)
    video_max_seconds: float = Field(60.0, gt=0)
    video_max_frames: int = Field(600, ge=1)
    video_max_width: int = Field(1024, ge=1)
    video_max_height: int = Field(1024, ge=1)
    # The decoder (ffmpeg) is killed past this many seconds.
    video_decode_timeout: float = Field(60.0, gt=0)

    # Webhooks (artgen.jobs.webhooks): off unless hosts are allowed: exact names, "*.suffix"
    # (its subdomains) or "*" (any host); comma-separated. Needs webhook_secret for signing.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    # Private, loopback, link-local, multicast and reserved addresses are refused unless this.
    webhook_allow_private: bool = False
    # Progress deliveries of a job at most this often (the newest progress is the one sent).
    webhook_progress_seconds: float = Field(5.0, ge=0)
    # Connect and read time limits of one attempt; what is read of the answer is capped too.
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    # Attempts per delivery; the wait between them doubles from backoff up to backoff_max.
    webhook_max_attempts: int = Field(10, ge=1)
    webhook_backoff_seconds: float = Field(2.0, gt=0)
    webhook_backoff_max_seconds: float = Field(600.0, gt=0)
    # Jobs whose deliveries are sent at the same time.
    webhook_concurrency: int = Field(4, ge=1, le=64)

    @field_validator("api_keys", "cors_origins", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _webhooks_need_a_secret(self) -> Settings:
        if self.webhook_allowed_hosts and not (
            self.webhook_secret and self.webhook_secret.get_secret_value()
        ):
            raise ValueError(
                "ARTGEN_WEBHOOK_ALLOWED_HOSTS is set but ARTGEN_WEBHOOK_SECRET is not: webhooks "
                "are signed with it (set a long random string)"
            )
        return self

    @property
    def largest_upload_bytes(self) -> int:
        """The largest file a request may carry: an image, or a restyle's video."""
        return max(self.max_upload_bytes, self.video_max_bytes or self.max_upload_bytes)

    def video_limits(self) -> VideoLimits:
        """The limits a restyle's source video is checked and decoded under."""
        return VideoLimits(
            max_bytes=self.video_max_bytes or self.max_upload_bytes,
            max_seconds=self.video_max_seconds,
            max_frames=self.video_max_frames,
            max_width=self.video_max_width,
            max_height=self.video_max_height,
            decode_timeout_s=self.video_decode_timeout,
        )

    @property
    def resolved_clip_models(self) -> list[str]:
        """The default critic(s) for jobs that do not name their own."""
        return self.clip_models_for(None)

    def clip_models_for(self, model: str | None) -> list[str]:
        """The critic(s) for a job on VQGAN `model` (None: the default) that names none."""
        if self.clip_model:
            return [name.strip() for name in self.clip_model.split(",") if name.strip()]
        model = self.model if model is None else model
        return [model] if model in PAIRED_MODELS else ["ViT-B-32/openai"]

    @property
    def resolved_queue_url(self) -> str:
        """The queue URL, defaulting to an embedded SQLite queue inside the data dir."""
        if self.queue_url:
            return self.queue_url
        return f"sqlite:///{(self.data_dir / 'queue.sqlite3').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once; tests build their own Settings instead."""
    return Settings()
