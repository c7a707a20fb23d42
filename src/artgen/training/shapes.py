"""Procedural pictures for the demo models: coloured shapes on coloured backgrounds, with captions.

Everything is drawn here from a `random.Random`, so a seed reproduces the same pictures and
captions; no file is read or written. Some (shape, colour, background) combinations are kept out
of training (`HELD_OUT`) so generalisation can be measured on them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (135, 45, 175),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SIZES = ("small", "large")
POSITIONS = ("center", "top left", "top right", "bottom left", "bottom right")

# (shape, colour, background) never drawn for training: each shape, colour and background still
# appears in training, only these pairings are new.
HELD_OUT: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("circle", "green", "purple"),
        ("circle", "white", "red"),
        ("circle", "orange", "black"),
        ("square", "yellow", "green"),
        ("square", "purple", "white"),
        ("square", "black", "orange"),
        ("triangle", "blue", "yellow"),
        ("triangle", "red", "white"),
        ("triangle", "green", "black"),
        ("star", "white", "blue"),
        ("star", "orange", "purple"),
        ("star", "yellow", "red"),
    }
)

# Radius (half the shape's extent) as a fraction of the side, and its jitter.
RADIUS = {"small": 0.17, "large": 0.31}
RADIUS_JITTER = 0.025
# Centre of the shape as a fraction of the side, per size (large shapes sit nearer the middle so
# they stay inside the picture).
CORNER_OFFSET = {"small": 0.26, "large": 0.35}
POSITION_JITTER = 0.03
COLOUR_JITTER = 12  # per channel, +-
SUPERSAMPLE = 4  # drawn this many times larger, then reduced: smooth edges

SHAPE_WORDS = {
    "circle": ("circle", "circle", "disc", "round dot"),
    "square": ("square", "square", "box"),
    "triangle": ("triangle",),
    "star": ("star", "star", "five-pointed star"),
}
COLOUR_WORDS = {
    "red": ("red", "red", "scarlet"),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue", "blue", "dark blue"),
    "purple": ("purple", "purple", "violet"),
    "white": ("white",),
    "black": ("black",),
}
POSITION_WORDS = {
    "center": ("in the center", "in the middle"),
    "top left": ("in the top left", "in the upper left corner"),
    "top right": ("in the top right", "in the upper right corner"),
    "bottom left": ("in the bottom left", "in the lower left corner"),
    "bottom right": ("in the bottom right", "in the lower right corner"),
}


@dataclass(frozen=True)
class Scene:
    """What one picture shows."""

    shape: str
    colour: str
    background: str
    size: str
    position: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        for field, value in (("colour", self.colour), ("background", self.background)):
            if value not in COLOURS:
                raise ValueError(f"unknown {field} {value!r}; expected one of {tuple(COLOURS)}")
        if self.colour == self.background:
            raise ValueError("the shape's colour and the background must differ")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {SIZES}")
        if self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}; expected one of {POSITIONS}")

    @property
    def combo(self) -> tuple[str, str, str]:
        """(shape, colour, background): what `HELD_OUT` is keyed on."""
        return (self.shape, self.colour, self.background)


def all_combos() -> list[tuple[str, str, str]]:
    """Every (shape, colour, background) with colour != background, in a fixed order."""
    return [
        (shape, colour, background)
        for shape in SHAPES
        for colour in COLOURS
        for background in COLOURS
        if colour != background
    ]


TRAIN_COMBOS: tuple[tuple[str, str, str], ...] = tuple(
    combo for combo in all_combos() if combo not in HELD_OUT
)


def random_scene(rng: random.Random, held_out: bool = False) -> Scene:
    """A random scene: from the training combinations, or (held_out=True) from `HELD_OUT`."""
    combos = sorted(HELD_OUT) if held_out else TRAIN_COMBOS
    shape, colour, background = rng.choice(combos)
    return Scene(shape, colour, background, rng.choice(SIZES), rng.choice(POSITIONS))


def _jitter_colour(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in rgb)
    return (r, g, b)


def _centre(scene: Scene, rng: random.Random) -> tuple[float, float]:
    offset = CORNER_OFFSET[scene.size]
    x = {"left": offset, "right": 1 - offset}
    y = {"top": offset, "bottom": 1 - offset}
    if scene.position == "center":
        cx, cy = 0.5, 0.5
    else:
        vertical, horizontal = scene.position.split()
        cx, cy = x[horizontal], y[vertical]
    return (
        cx + rng.uniform(-POSITION_JITTER, POSITION_JITTER),
        cy + rng.uniform(-POSITION_JITTER, POSITION_JITTER),
    )


def _polygon(cx: float, cy: float, radii: list[float], start: float) -> list[tuple[float, float]]:
    """Points at equal angles from `start` (radians, 0 = up), one per radius."""
    step = 2 * math.pi / len(radii)
    return [
        (cx + r * math.sin(start + i * step), cy - r * math.cos(start + i * step))
        for i, r in enumerate(radii)
    ]


def draw(scene: Scene, side: int, rng: random.Random) -> Image.Image:
    """The scene as an RGB `side` x `side` picture; size, position, angle and colours jittered."""
    big = side * SUPERSAMPLE
    image = Image.new("RGB", (big, big), _jitter_colour(COLOURS[scene.background], rng))
    canvas = ImageDraw.Draw(image)
    fill = _jitter_colour(COLOURS[scene.colour], rng)
    cx, cy = (c * big for c in _centre(scene, rng))
    radius = (RADIUS[scene.size] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * big
    tilt = math.radians(rng.uniform(-12.0, 12.0))
    if scene.shape == "circle":
        canvas.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif scene.shape == "square":
        # Corner radius so the square's side is ~1.6 radius: a similar area to the circle.
        corner = radius * 1.15
        canvas.polygon(_polygon(cx, cy, [corner] * 4, math.pi / 4 + tilt), fill=fill)
    elif scene.shape == "triangle":
        # Equilateral, pointing up; its centroid sits a little low so it looks centred.
        points = _polygon(cx, cy + radius * 0.15, [radius * 1.2] * 3, tilt)
        canvas.polygon(points, fill=fill)
    else:
        radii = [radius * 1.15, radius * 0.48] * 5
        canvas.polygon(_polygon(cx, cy, radii, tilt), fill=fill)
    return image.resize((side, side), Image.Resampling.BOX)


def draw_blob(scene: Scene, side: int, rng: random.Random) -> Image.Image:
    """The scene with its shape replaced by a blob: a smooth irregular outline of a similar size,
    in the shape's colour at its position. What a generation that has the colours but not the
    shape looks like; the CLIP's shape stage uses it as a negative for captions naming a shape."""
    big = side * SUPERSAMPLE
    image = Image.new("RGB", (big, big), _jitter_colour(COLOURS[scene.background], rng))
    canvas = ImageDraw.Draw(image)
    cx, cy = (c * big for c in _centre(scene, rng))
    radius = (RADIUS[scene.size] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * big
    fill = _jitter_colour(COLOURS[scene.colour], rng)
    # One lump, or (a third of the time) a few smaller ones scattered: generation's collages.
    count = 1 if rng.random() < 2 / 3 else rng.randint(2, 4)
    for index in range(count):
        scale = 1.0 if count == 1 else rng.uniform(0.35, 0.6)
        x, y = (
            (cx, cy) if index == 0 else (rng.uniform(0.1, 0.9) * big, rng.uniform(0.1, 0.9) * big)
        )
        raw = [rng.uniform(0.55, 1.3) for _ in range(12)]
        # Neighbours averaged: lumpy, not spiky (a spiky outline would be half a star).
        smooth = [(raw[i - 1] + 2 * raw[i] + raw[(i + 1) % len(raw)]) / 4 for i in range(12)]
        radii = [radius * scale * r for r in smooth]
        canvas.polygon(_polygon(x, y, radii, rng.uniform(0, math.pi)), fill=fill)
    return image.resize((side, side), Image.Resampling.BOX)


def prompt_for(scene: Scene) -> str:
    """The canonical prompt: "a red circle on a blue background" (an orange ..., an orange ...)."""
    return (
        f"{_article(scene.colour)} {scene.colour} {scene.shape} "
        f"on {_article(scene.background)} {scene.background} background"
    )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption_with_facts(scene: Scene, rng: random.Random) -> tuple[str, frozenset[str]]:
    """`caption(scene, rng)` and the Scene fields it names ("shape", "colour", ...), drawing the
    same random numbers: a caption is true of every scene that agrees on those fields."""
    shape = rng.choice(SHAPE_WORDS[scene.shape])
    colour = rng.choice(COLOUR_WORDS[scene.colour])
    background = rng.choice(COLOUR_WORDS[scene.background])
    where = rng.choice(POSITION_WORDS[scene.position])
    kind = rng.random()
    if kind < 0.2:
        template = rng.choice(("{a} {shape}", "a picture of {a} {shape}", "{a} {size} {shape}"))
    elif kind < 0.3:
        template = rng.choice(
            ("{colour} on {background}", "something {colour} on a {background} background")
        )
    else:
        template = rng.choice(
            (
                "a {colour} {shape} on a {background} background",
                "a {colour} {shape} on a {background} background",
                "a {size} {colour} {shape} on a {background} background",
                "a {colour} {shape} {where} on a {background} background",
                "a {size} {colour} {shape} {where}",
                "a {colour} {shape} against {background}",
                "a picture of a {colour} {shape} on {background}",
                "{a_colour} {colour} {shape}, {background} background",
            )
        )
    facts = frozenset(
        name
        for name, key in (
            ("shape", "{shape}"),
            ("colour", "{colour}"),
            ("background", "{background}"),
            ("size", "{size}"),
            ("position", "{where}"),
        )
        if key in template
    )
    text = template.format(
        a=_article(scene.size if "{size}" in template else shape),
        a_colour=_article(colour),
        shape=shape,
        colour=colour,
        background=background,
        size=scene.size,
        where=where,
    )
    return text.replace("a orange", "an orange"), facts


def caption(scene: Scene, rng: random.Random) -> str:
    """A caption for the scene from templates and synonyms.

    About a fifth name only the shape and a tenth only the colours, so the shape is learned on its
    own and not only as part of a colour pairing.
    """
    return caption_with_facts(scene, rng)[0]


def agrees(scene: Scene, other: Scene, facts: frozenset[str]) -> bool:
    """Whether `other` matches `scene` on every field in `facts`."""
    return all(getattr(scene, name) == getattr(other, name) for name in facts)
