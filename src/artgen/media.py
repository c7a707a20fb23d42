"""The PNG files artgen writes, for the CLI and the service alike: one writer, one reader.

Text chunks of an artgen PNG (the schema `artgen generate --params-from` reads back):
  prompt      the text prompts, as given ("a castle:1 | fog:-0.5")
  seed        the seed actually used, in decimal
  parameters  JSON object, sorted keys: every GenerationParams field with the seed used, plus
              "model" and "clip_models" (the names the generation ran with), and whatever else the
              writer knows (the service: "video", "preview_every"; the CLI: "init_image",
              "image_prompts" paths, "loss")
  Software    "artgen <version>"
PNGs written by the service before this schema carried the JSON under "params"; they still read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

PARAMETERS_KEY = "parameters"
# Where older artgen PNGs kept the same JSON (the service's writer before this module).
LEGACY_PARAMETERS_KEYS = ("params",)


def png_text(parameters: Mapping[str, Any], seed: int) -> dict[str, str]:
    """The text chunks of an artgen PNG for a generation with `parameters` and the `seed` used."""
    from artgen import __version__

    recorded = {**parameters, "seed": seed}
    prompt = recorded.get("prompt", recorded.get("prompts", ""))
    return {
        "prompt": prompt if isinstance(prompt, str) else " | ".join(map(str, prompt)),
        "seed": str(seed),
        PARAMETERS_KEY: json.dumps(recorded, sort_keys=True),
        "Software": f"artgen {__version__}",
    }


def encode_png(
    image: Image.Image, text: Mapping[str, str] | None = None, compress_level: int = 6
) -> bytes:
    """Encode `image` as an RGB PNG carrying the text chunks `text`."""
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def write_png(image: Image.Image, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Write `encode_png(image, text)` to `path` atomically (a temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(encode_png(image, text))
    temporary.replace(path)


class NoParameters(ValueError):
    """The PNG carries no artgen parameters, or they are not a JSON object."""


def read_parameters(image: Image.Image) -> dict[str, Any]:
    """The parameters JSON object an artgen PNG carries; NoParameters when it has none."""
    text: Mapping[str, str] = getattr(image, "text", None) or {}
    for key in (PARAMETERS_KEY, *LEGACY_PARAMETERS_KEYS):
        if key in text:
            raw = text[key]
            break
    else:
        raise NoParameters("carries no artgen parameters (not made by artgen?)")
    try:
        recorded = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise NoParameters("its artgen parameters are not valid JSON") from None
    if not isinstance(recorded, dict):
        raise NoParameters("its artgen parameters are not a JSON object")
    return recorded
