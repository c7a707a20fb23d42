"""AnimationParams: the knobs of an animation or a restyled video, validated; no torch (the API
and clients import it)."""

from __future__ import annotations

import re

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from artgen.engine.keyframes import KeyframeError, Keyframes
from artgen.engine.prompt_syntax import parse_prompts

# The motion schedules, by field name; each is a Keyframes text.
MOTION_FIELDS = ("zoom", "angle", "translation_x", "translation_y")
MAX_FRAMES = 10_000
MAX_PROMPT_SCHEDULE_ENTRIES = 100
# C0 controls other than tab/newline/CR, DEL and C1 controls: never meaningful in a prompt.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class FramePrompt(BaseModel):
    """From frame `frame` on, the text prompts become `prompt`."""

    model_config = ConfigDict(extra="forbid")

    frame: int = Field(ge=0, description="frame from which `prompt` applies")
    prompt: str = Field(description="'text:weight:stop | ...' used from that frame on")

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (give the text prompts for these frames)")
        if _CONTROL_CHARS.search(value):
            raise ValueError("contains control characters (tabs and newlines are fine)")
        parse_prompts(value)
        return value


class AnimationParams(BaseModel):
    """How a video is made of pictures: frame count, per-frame effort, motion and prompts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    frames: int = Field(30, ge=1, le=MAX_FRAMES, description="frames in the video")
    iterations_per_frame: int = Field(
        10, ge=1, le=1000, description="iterations of each frame after the first"
    )
    fps: int = Field(12, ge=1, le=60, description="frames per second of the video")
    zoom: str = Field("0:(1.0)", description="keyframes 'frame:(value), ...'; > 1 zooms in")
    angle: str = Field("0:(0)", description="keyframes; degrees per frame, counter-clockwise")
    translation_x: str = Field("0:(0)", description="keyframes; pixels per frame, + is right")
    translation_y: str = Field("0:(0)", description="keyframes; pixels per frame, + is down")
    prompt_schedule: list[FramePrompt] = Field(
        default_factory=list,
        max_length=MAX_PROMPT_SCHEDULE_ENTRIES,
        description="from each entry's frame on, its prompt replaces the text prompts",
    )
    coherence: float = Field(
        0.5, ge=0, le=1, description="restyle: weight of the previous stylised frame in each start"
    )

    @field_validator(*MOTION_FIELDS)
    @classmethod
    def _check_schedule(cls, value: str, info: ValidationInfo) -> str:
        name = info.field_name or "schedule"
        try:
            keyframes = Keyframes.parse(value)
        except KeyframeError as error:
            raise ValueError(f"{name}: {error}") from None
        if name == "zoom":
            for frame, zoom in keyframes.points:
                if zoom <= 0:
                    raise ValueError(
                        f"zoom: frame {frame} has zoom {zoom}; zoom must be above 0 "
                        "(1 keeps the size, 1.02 zooms in 2% per frame)"
                    )
        return value

    @model_validator(mode="after")
    def _check_prompt_schedule(self) -> AnimationParams:
        frames = [entry.frame for entry in self.prompt_schedule]
        if len(set(frames)) != len(frames):
            raise ValueError("prompt_schedule: two entries have the same frame")
        return self

    def keyframes(self, name: str) -> Keyframes:
        """The parsed schedule of motion field `name` (zoom, angle, translation_x/_y)."""
        if name not in MOTION_FIELDS:
            raise ValueError(
                f"{name!r} is not a motion schedule; one of {', '.join(MOTION_FIELDS)}"
            )
        return Keyframes.parse(getattr(self, name))

    def total_iterations(self, first_frame_iterations: int) -> int:
        """Iterations over the whole video: frame 0 gets its own count, the others the same."""
        return first_frame_iterations + (self.frames - 1) * self.iterations_per_frame

    def prompts_at(self, frame: int, base: str) -> str:
        """The text prompts of `frame`: the latest prompt_schedule entry at or before it, or
        `base` (the job's prompts)."""
        current = base
        for entry in sorted(self.prompt_schedule, key=lambda item: item.frame):
            if entry.frame <= frame:
                current = entry.prompt
        return current
