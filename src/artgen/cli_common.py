"""Helpers shared by the `artgen` commands: clean error exits, settings, image files and
parameters from flags (the progress bars are in cli_progress.py).

They live outside cli.py so that each command module (cli.py, cli_animate.py, ...) stays small.
Torch-free, like every cli_* module: what needs torch (the device, the models) is in the local_*
modules, imported only when a command runs on this machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from artgen.config import Settings
from artgen.engine.params import GenerationParams
from artgen.engine.prompt_syntax import parse_prompt
from artgen.models.errors import CheckpointError, ModelUnavailable

# Exit code for bad input (click's own usage errors use it too).
EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print one clear line to stderr and exit with EXIT_BAD_INPUT."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def describe_error(error: Exception) -> str:
    """One line for a user-caused error (pydantic errors name the field)."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in first["loc"])
        return f"{field}: {message}" if field else message
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines())


def user_error_types() -> tuple[type[Exception], ...]:
    """Errors that mean the input is wrong (not a bug): reported in one line, exit 2."""
    return (ValueError, OSError, ModelUnavailable, CheckpointError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the user-caused errors raised inside into `fail`."""
    try:
        yield
    except user_error_types() as error:
        fail(describe_error(error))


def build_settings(**overrides: Any) -> Settings:
    """Settings from ARTGEN_* env, with the CLI flags that were given taking precedence."""
    given = {name: value for name, value in overrides.items() if value is not None}
    with user_errors():
        return Settings(**given)


def read_image(path: Path, what: str) -> Image.Image:
    """Open an image file as RGB, or fail naming the option and the file."""
    if not path.is_file():
        fail(f"{what} {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        fail(f"{what} {str(path)!r} is not a readable image ({describe_error(error)})")


def parse_image_prompt(value: str) -> tuple[Path, float, float | None]:
    """'y.png', 'y.png:0.5' or 'y.png:0.5:0.2' -> (path, weight, stop or None), the text prompts'
    syntax (as the seed parses image prompts); a non-numeric tail is part of the path."""
    try:
        spec = parse_prompt(value)
    except ValueError as error:
        fail(f"--image-prompt {value!r}: {error}")
    return Path(spec.text), spec.weight, None if spec.stop == float("-inf") else spec.stop


# GenerationParams fields whose CLI spelling is not --field-name.
PARAM_OPTIONS = {"width": "--size", "height": "--size", "prompts": "PROMPTS",
                 "image_prompt_weights": "--image-prompt",
                 "image_prompt_stops": "--image-prompt"}  # fmt: skip


def build_params(recorded: dict[str, Any], values: dict[str, Any]) -> GenerationParams:
    """GenerationParams from the flags given, then `recorded` values, then library defaults."""
    given = {
        name: value for name, value in recorded.items() if name in GenerationParams.model_fields
    }
    given.update((name, value) for name, value in values.items() if value is not None)
    try:
        return GenerationParams(**given)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        option = PARAM_OPTIONS.get(field, "--" + field.replace("_", "-"))
        message = str(first["msg"]).removeprefix("Value error, ").removeprefix(f"{field}: ")
        if field in PARAM_OPTIONS:
            option = f"{option} ({field})"
        fail(f"{option}: {message}" if field else message)


def format_size(size_bytes: int | None) -> str:
    """1_000_000_000 -> '1.0 GB'; None -> '-'."""
    if size_bytes is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} B"
