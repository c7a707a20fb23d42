"""Keyframe schedules in Deforum's syntax ("0:(1.02), 60:(1.0)"), linearly interpolated.

A schedule is a comma-separated list of `frame:(value)` items: `frame` a non-negative integer,
`value` a finite decimal number (sign, point and exponent allowed). Between keyframes the value is
interpolated linearly; before the first keyframe and after the last it stays constant.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass

# A frame above this is surely a typo (animations have at most 10,000 frames).
MAX_KEYFRAME = 1_000_000
MAX_SCHEDULE_CHARS = 10_000

_FRAME = re.compile(r"\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SPACE = re.compile(r"\s*")


class KeyframeError(ValueError):
    """A schedule that does not parse; `position` is the 0-based character offset of the problem."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(f"position {position}: {problem}")
        self.position = position
        self.problem = problem


class _Scanner:
    """A cursor over the schedule text that skips blanks and reports where it stands."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.position)
        assert match is not None  # \s* always matches
        self.position = match.end()

    def at_end(self) -> bool:
        self.skip_space()
        return self.position >= len(self.text)

    def expect(self, character: str, after: str) -> None:
        self.skip_space()
        if not self.text.startswith(character, self.position):
            raise KeyframeError(self.position, f"expected {character!r} after {after}")
        self.position += 1

    def take(self, pattern: re.Pattern[str]) -> str | None:
        self.skip_space()
        match = pattern.match(self.text, self.position)
        if match is None:
            return None
        self.position = match.end()
        return match.group()


@dataclass(frozen=True)
class Keyframes:
    """A parsed schedule: (frame, value) points sorted by frame, frames distinct."""

    points: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a schedule needs at least one keyframe")
        frames = [frame for frame, _ in self.points]
        if frames != sorted(set(frames)):
            raise ValueError("keyframes must be sorted by frame, each frame once")

    @classmethod
    def parse(cls, text: str) -> Keyframes:
        """Parse "0:(1.02), 60:(1.0)"; raise KeyframeError naming the position of a problem."""
        if len(text) > MAX_SCHEDULE_CHARS:
            raise KeyframeError(MAX_SCHEDULE_CHARS, f"longer than {MAX_SCHEDULE_CHARS} characters")
        scanner = _Scanner(text)
        if scanner.at_end():
            raise KeyframeError(0, "empty schedule; write keyframes as 'frame:(value)', e.g. 0:(1)")
        points: dict[int, float] = {}
        while True:
            frame_position = _start(scanner)
            frame = _frame(scanner)
            if frame in points:
                raise KeyframeError(frame_position, f"frame {frame} appears twice")
            scanner.expect(":", f"frame {frame}")
            scanner.expect("(", "':'")
            points[frame] = _value(scanner)
            scanner.expect(")", "the value")
            if scanner.at_end():
                break
            scanner.expect(",", "')' (separate keyframes with commas)")
            if scanner.at_end():
                break  # a trailing comma, as Deforum allows
        return cls(tuple(sorted(points.items())))

    def at(self, frame: int) -> float:
        """The value at `frame`: linear between keyframes, constant outside them."""
        frames = [point[0] for point in self.points]
        index = bisect_right(frames, frame)
        if index == 0:
            return self.points[0][1]
        if index == len(self.points):
            return self.points[-1][1]
        (start, low), (end, high) = self.points[index - 1], self.points[index]
        return low + (high - low) * (frame - start) / (end - start)


def _start(scanner: _Scanner) -> int:
    scanner.skip_space()
    return scanner.position


def _frame(scanner: _Scanner) -> int:
    position = _start(scanner)
    if scanner.text.startswith("-", position):
        raise KeyframeError(position, "frame numbers must not be negative")
    digits = scanner.take(_FRAME)
    if digits is None:
        raise KeyframeError(position, "expected a frame number (a non-negative integer)")
    if len(digits) > len(str(MAX_KEYFRAME)) or int(digits) > MAX_KEYFRAME:
        raise KeyframeError(position, f"frame {digits} is above {MAX_KEYFRAME}")
    return int(digits)


def _value(scanner: _Scanner) -> float:
    position = _start(scanner)
    number = scanner.take(_NUMBER)
    if number is None:
        raise KeyframeError(position, "expected a number such as 1.02 or -0.5")
    value = float(number)
    if not math.isfinite(value):
        raise KeyframeError(position, f"{number} is not a finite number")
    return value
