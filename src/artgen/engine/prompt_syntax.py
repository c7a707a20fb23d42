"""The prompt grammar ("text:weight:stop | ..."): parsing only, no torch (clients import it)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# The grammar (README "Prompts"): a ':' field is a weight or stop only when it is a number:
# optional sign, digits with an optional point (or a point and digits), optional exponent, or
# inf ("-inf": no stop). Every other ':' is text: 'a:b:c:d', 'a castle:abc', 'castle:', '16:9'.
NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?inf(inity)?\s*$", re.I)


@dataclass(frozen=True)
class PromptSpec:
    """One parsed text prompt: pull toward `text` with `weight` until the distance is `stop`."""

    text: str
    weight: float = 1.0
    stop: float = -math.inf


@dataclass(frozen=True)
class NoisePromptSpec:
    """A random embedding drawn from `seed`, weighted like a text prompt."""

    seed: int
    weight: float = 1.0


def _split_items(text: str) -> list[str]:
    """Split on '|' and reject empty items such as 'a || b' or a trailing '|'."""
    if not text.strip():
        return []
    items = [item.strip() for item in text.split("|")]
    for position, item in enumerate(items, start=1):
        if not item:
            raise ValueError(f"prompt {position} of {text!r} is empty (check the '|' separators)")
    return items


def parse_prompt(item: str) -> PromptSpec:
    """Parse "text", "text:weight" or "text:weight:stop": the last one or two ':' fields are the
    weight and stop when they are numbers (NUMBER); any other ':' belongs to the text."""
    fields = item.split(":")
    numeric_tail = 0
    for field in reversed(fields[1:]):
        if numeric_tail == 2 or not NUMBER.match(field):
            break
        numeric_tail += 1
    text = ":".join(fields[: len(fields) - numeric_tail]).strip()
    numbers = [float(field) for field in fields[len(fields) - numeric_tail :]]
    if not text:
        raise ValueError(f"prompt {item!r} has a weight but no text")
    weight = numbers[0] if numbers else 1.0
    if not math.isfinite(weight):
        raise ValueError(f"weight in prompt {item!r} must be a finite number")
    stop = numbers[1] if len(numbers) > 1 else -math.inf
    if stop == math.inf:
        raise ValueError(f"stop in prompt {item!r} must be a finite number (or -inf: no stop)")
    return PromptSpec(text=text, weight=weight, stop=stop)


def parse_prompts(text: str) -> list[PromptSpec]:
    """Parse "text:weight:stop | other:-0.5" into specs; "" gives no prompts."""
    return [parse_prompt(item) for item in _split_items(text)]


def parse_noise_prompts(text: str) -> list[NoisePromptSpec]:
    """Parse "seed:weight | seed" (weight 1 when omitted) into noise prompt specs."""
    specs = []
    for item in _split_items(text):
        fields = [field.strip() for field in item.split(":")]
        if len(fields) > 2:
            raise ValueError(f"noise prompt {item!r} must be 'seed' or 'seed:weight'")
        if not re.fullmatch(r"\d+", fields[0]):
            raise ValueError(f"noise prompt {item!r}: seed must be a non-negative integer")
        seed = int(fields[0])
        if seed >= 2**63:
            raise ValueError(f"noise prompt {item!r}: seed must be below 2**63")
        if len(fields) == 2 and not NUMBER.match(fields[1]):
            raise ValueError(f"noise prompt {item!r}: weight {fields[1]!r} is not a number")
        weight = float(fields[1]) if len(fields) == 2 else 1.0
        if not math.isfinite(weight):
            raise ValueError(f"weight in noise prompt {item!r} must be a finite number")
        specs.append(NoisePromptSpec(seed=seed, weight=weight))
    return specs
