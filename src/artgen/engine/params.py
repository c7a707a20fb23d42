"""GenerationParams: every knob of one generation, validated and JSON-serialisable."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from artgen.engine.prompt_syntax import (
    NoisePromptSpec,
    PromptSpec,
    parse_noise_prompts,
    parse_prompts,
)

MAX_SEED = 2**63 - 1
# Every entry's prompts are embedded when a generation starts; a story needs a few scenes.
MAX_SCHEDULE_ENTRIES = 100


class ScheduledPrompts(BaseModel):
    """Story mode: from iteration `at` on, the text prompts become `prompts`."""

    model_config = ConfigDict(extra="forbid")

    at: int = Field(ge=1, description="iteration (0-based count of steps done) where this applies")
    prompts: str = Field(description="'text:weight:stop | ...' used from `at` on")

    @field_validator("prompts")
    @classmethod
    def _check_prompts(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (a scene needs a text prompt)")
        parse_prompts(value)
        return value


class GenerationParams(BaseModel):
    """Parameters of one CLIP-guided VQGAN generation (the seed's defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompts: str = Field(
        description="'text:weight:stop | other:-0.5'; '' only with image or noise prompts"
    )
    width: int = Field(256, ge=16, le=2048)
    height: int = Field(256, ge=16, le=2048)
    iterations: int = Field(100, ge=1, le=100_000)
    # None: a random seed is picked and recorded on the Generation.
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    step_size: float = Field(0.1, gt=0)
    cutn: int = Field(64, ge=1, le=512)
    cut_pow: float = Field(1.0, gt=0)
    # Pull toward the initial latent (useful with an init image); 0 disables.
    init_weight: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "adagrad", "sgd"] = "adam"
    augment: bool = True
    noise_prompts: str = Field("", description="'seed:weight | seed:weight'")
    schedule: list[ScheduledPrompts] = Field(default_factory=list, max_length=MAX_SCHEDULE_ENTRIES)
    # One weight per image prompt given to the Generation; empty means 1.0 each.
    image_prompt_weights: list[float] = Field(default_factory=list)
    # One stop per image prompt, as a text prompt's 'text:weight:stop'; None or empty: no stop.
    image_prompt_stops: list[float | None] = Field(default_factory=list)

    @field_validator("prompts")
    @classmethod
    def _check_prompts(cls, value: str) -> str:
        parse_prompts(value)
        return value

    @field_validator("noise_prompts")
    @classmethod
    def _check_noise_prompts(cls, value: str) -> str:
        parse_noise_prompts(value)
        return value

    @field_validator("image_prompt_weights")
    @classmethod
    def _check_image_weights(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(weight) for weight in value):
            raise ValueError("image prompt weights must be finite numbers")
        return value

    @field_validator("image_prompt_stops")
    @classmethod
    def _check_image_stops(cls, value: list[float | None]) -> list[float | None]:
        if any(stop is not None and not math.isfinite(stop) for stop in value):
            raise ValueError("image prompt stops must be finite numbers or null (no stop)")
        return value

    @model_validator(mode="after")
    def _check_image_prompt_lists(self) -> GenerationParams:
        weights, stops = self.image_prompt_weights, self.image_prompt_stops
        if weights and stops and len(weights) != len(stops):
            raise ValueError(
                f"image_prompt_stops has {len(stops)} entries for {len(weights)} image prompt "
                "weights: give one of each per image prompt"
            )
        return self

    @model_validator(mode="after")
    def _check_schedule(self) -> GenerationParams:
        ats = [item.at for item in self.schedule]
        if len(set(ats)) != len(ats):
            raise ValueError("schedule: two entries have the same 'at' iteration")
        for item in self.schedule:
            if item.at >= self.iterations:
                raise ValueError(
                    f"schedule: 'at' {item.at} must be below iterations ({self.iterations})"
                )
        return self

    def text_prompts(self) -> list[PromptSpec]:
        """The parsed initial text prompts."""
        return parse_prompts(self.prompts)

    def noise_prompt_specs(self) -> list[NoisePromptSpec]:
        """The parsed noise prompts."""
        return parse_noise_prompts(self.noise_prompts)

    def prompts_at(self, iteration: int) -> str:
        """The text prompts in force when `iteration` steps have been done (story mode)."""
        current = self.prompts
        for item in sorted(self.schedule, key=lambda entry: entry.at):
            if item.at <= iteration:
                current = item.prompts
        return current
