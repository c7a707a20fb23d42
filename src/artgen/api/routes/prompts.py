"""The prompt grammar over HTTP: how the server reads a prompt, for the page's chips."""

from __future__ import annotations

import math

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from artgen.api.deps import OwnerDep
from artgen.engine.prompts import parse_noise_prompts, parse_prompts

router = APIRouter(prefix="/v1", tags=["prompts"])

# Bounds the work of one request; POST /v1/jobs applies the server's own (smaller) limit.
MAX_PARSE_CHARS = 100_000


class PromptParse(BaseModel):
    """A prompt as POST /v1/jobs takes it ("a | b" text or a list), and optional noise prompts."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | list[str] = Field(
        description="'text:weight:stop | other:-0.5', or a list of 'text:weight:stop'",
        examples=["a castle in the clouds:1 | fog:-0.5"],
    )
    noise_prompts: str = Field("", description="'seed:weight | seed'")

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str | list[str]) -> str:
        text = value if isinstance(value, str) else " | ".join(item.strip() for item in value)
        if len(text) > MAX_PARSE_CHARS:
            raise ValueError(f"at most {MAX_PARSE_CHARS} characters")
        parse_prompts(text)
        return text

    @field_validator("noise_prompts")
    @classmethod
    def _check_noise(cls, value: str) -> str:
        if len(value) > MAX_PARSE_CHARS:
            raise ValueError(f"at most {MAX_PARSE_CHARS} characters")
        parse_noise_prompts(value)
        return value


class PromptPublic(BaseModel):
    """One text prompt: pull toward `text` (away when `weight` < 0) until distance `stop`."""

    text: str
    weight: float
    stop: float | None = Field(description="null: no stop")


class NoisePromptPublic(BaseModel):
    """One noise prompt."""

    seed: int
    weight: float


class PromptsParsed(BaseModel):
    """The prompts exactly as a job would use them."""

    prompts: list[PromptPublic]
    noise_prompts: list[NoisePromptPublic]


@router.post("/prompts/parse", response_model=PromptsParsed, summary="Read a prompt")
async def parse_prompt_text(body: PromptParse, owner: OwnerDep) -> PromptsParsed:
    """How a job reads `prompt` (the README's grammar): its texts, weights and stops; 422 names
    what is wrong, with the same message POST /v1/jobs would give."""
    assert isinstance(body.prompt, str)  # the validator joined a list
    prompts = [
        PromptPublic(
            text=spec.text,
            weight=spec.weight,
            stop=None if spec.stop == -math.inf else spec.stop,
        )
        for spec in parse_prompts(body.prompt)
    ]
    noise = [
        NoisePromptPublic(seed=spec.seed, weight=spec.weight)
        for spec in parse_noise_prompts(body.noise_prompts)
    ]
    return PromptsParsed(prompts=prompts, noise_prompts=noise)
