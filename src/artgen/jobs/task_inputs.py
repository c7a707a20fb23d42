"""What a worker's task payload carries besides its params, decoded once for JobRun and
AnimationRun: the init image, the image prompts and an earlier attempt's resume state."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image


def decode_image(data: bytes) -> Image.Image:
    """An uploaded image (init image, image prompt) as RGB."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


@dataclass(frozen=True)
class TaskInputs:
    """What a task's payload carries besides its params, decoded: the init image, the image
    prompts and the resume state of an earlier attempt (None for a first attempt)."""

    init_image: Image.Image | None
    image_prompts: list[Image.Image]
    resume_state: dict[str, Any] | None

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> TaskInputs:
        """Decode the payload's images and checkpoint."""
        init_data = payload.get("init_image")
        checkpoint = payload.get("checkpoint")
        state = None
        if checkpoint:
            state = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)
        return cls(
            init_image=decode_image(init_data) if init_data else None,
            image_prompts=[decode_image(data) for data in payload.get("image_prompts", [])],
            resume_state=state,
        )
