"""The job kinds and the animation fields a job takes flat (engine AnimationParams's fields).

Each field is None unless given (a picture job takes none), and is checked by AnimationParams
itself, so a bad schedule's 422 names the field and the position; no torch here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from artgen.engine.animation_params import (
    MAX_FRAMES,
    MAX_PROMPT_SCHEDULE_ENTRIES,
    AnimationParams,
    FramePrompt,
)

# The AnimationParams fields a job takes flat (kind animation or restyle only).
ANIMATION_FIELDS = (
    "frames",
    "iterations_per_frame",
    "fps",
    "zoom",
    "angle",
    "translation_x",
    "translation_y",
    "prompt_schedule",
    "coherence",
)
KEYFRAME_FIELDS = ("zoom", "angle", "translation_x", "translation_y")
# Fields each kind refuses (a restyle takes its frames, fps and motion from the source video).
REFUSED_FIELDS = {
    "picture": ANIMATION_FIELDS,
    "animation": ("coherence",),
    "restyle": ("frames", "fps", *KEYFRAME_FIELDS),
}
_REFUSAL_HINTS = {
    "picture": " (animation fields need kind animation or restyle)",
    "animation": " (coherence is for kind restyle)",
    "restyle": " (a restyle takes its frames, fps and motion from the source video)",
}

ANIMATION_EXAMPLE: dict[str, Any] = {
    "kind": "animation",
    "prompt": "a city at night",
    "width": 64,
    "height": 64,
    "iterations": 30,
    "frames": 24,
    "iterations_per_frame": 5,
    "fps": 12,
    "zoom": "0:(1.03), 12:(1.0)",
    "angle": "0:(0.5)",
    "translation_x": "0:(0), 12:(2)",
    "prompt_schedule": [{"frame": 12, "prompt": "a stormy sea"}],
}
# Sent as the multipart `params` field next to the `source_video` file.
RESTYLE_EXAMPLE: dict[str, Any] = {
    "kind": "restyle",
    "prompt": "an oil painting",
    "width": 64,
    "height": 64,
    "iterations": 20,
    "iterations_per_frame": 5,
    "coherence": 0.4,
}


class JobKind(StrEnum):
    """What a job makes: one picture, a zoom/pan/rotate animation, or a restyled video."""

    picture = "picture"
    animation = "animation"
    restyle = "restyle"

    @property
    def animated(self) -> bool:
        """True for the kinds made of frames (animation, restyle)."""
        return self != JobKind.picture


class AnimationFields(BaseModel):
    """JobCreate's `kind` and animation fields; None means AnimationParams's default."""

    kind: JobKind = Field(
        JobKind.picture,
        description="picture; animation (the fields below); restyle (multipart with source_video)",
    )
    frames: int | None = Field(None, ge=1, le=MAX_FRAMES, description="animation: frames to make")
    iterations_per_frame: int | None = Field(
        None, ge=1, le=1000, description="iterations of each frame after the first (`iterations`)"
    )
    fps: int | None = Field(None, ge=1, le=60, description="animation: frames per second")
    zoom: str | None = Field(None, description="keyframes, e.g. '0:(1.02), 60:(1.0)' (>1: in)")
    angle: str | None = Field(None, description="keyframes: degrees per frame (+: anticlockwise)")
    translation_x: str | None = Field(None, description="keyframes: pixels per frame (+: right)")
    translation_y: str | None = Field(None, description="keyframes: pixels per frame (+: down)")
    prompt_schedule: list[FramePrompt] | None = Field(
        None,
        max_length=MAX_PROMPT_SCHEDULE_ENTRIES,
        description="from each entry's frame on, its prompt",
    )
    coherence: float | None = Field(
        None, ge=0, le=1, description="restyle: weight of the previous stylised frame, 0..1"
    )

    @field_validator(*KEYFRAME_FIELDS, "prompt_schedule")
    @classmethod
    def _check_with_engine(cls, value: Any, info: ValidationInfo) -> Any:
        """AnimationParams's own checks (keyframe syntax with the position, zoom above 0, one
        prompt per frame), its message without the field name (the error adds it)."""
        if value is None:
            return None
        name = info.field_name or ""
        try:
            AnimationParams.model_validate({name: value})
        except ValidationError as exc:
            message = str(exc.errors()[0].get("msg", "invalid"))
            message = message.removeprefix("Value error, ").removeprefix(f"{name}: ")
            raise ValueError(message) from None
        return value

    def animation_fields_given(self) -> list[str]:
        """The animation fields this request sets."""
        return [name for name in ANIMATION_FIELDS if getattr(self, name) is not None]

    def refused_fields(self) -> list[str]:
        """The fields given that this request's kind does not take."""
        refused = REFUSED_FIELDS[self.kind.value]
        return [name for name in self.animation_fields_given() if name in refused]

    def kind_problems(self, *, has_source: bool, video: bool) -> list[tuple[str, str]]:
        """(field, message) for each field the kind refuses, a timelapse (`video`) asked of an
        animated kind, and a source video missing from a restyle or given to another kind."""
        kind = self.kind.value
        problems = [
            (name, f"not a field of a {kind} job{_REFUSAL_HINTS[kind]}")
            for name in self.refused_fields()
        ]
        if self.kind.animated and video:
            problems.append(("video", f"a {kind} job's output is a video; leave `video` out"))
        if self.kind == JobKind.restyle and not has_source:
            message = "a restyle job needs a video: send multipart with `params` and a"
            problems.append(("source_video", message + " `source_video` file (MP4, WebM or GIF)"))
        if has_source and self.kind != JobKind.restyle:
            problems.append(
                ("source_video", 'only a restyle job takes a video ("kind": "restyle")')
            )
        return problems

    def animation_params(self) -> AnimationParams:
        """The engine's AnimationParams (defaults where a field is unset)."""
        given: dict[str, Any] = self.model_dump(include=set(self.animation_fields_given()))
        return AnimationParams(**given)
