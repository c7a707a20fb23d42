"""The procedural pictures and captions the demo models are trained and judged on."""

import random

import numpy as np
import pytest

from artgen.training import shapes


def test_draw_is_reproducible_and_the_requested_size():
    scene = shapes.Scene("star", "red", "blue", "large", "top left")
    first = shapes.draw(scene, 64, random.Random(3))
    second = shapes.draw(scene, 64, random.Random(3))
    assert first.size == (64, 64) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(second))


@pytest.mark.parametrize("position", shapes.POSITIONS)
def test_the_shape_sits_where_the_scene_says_and_the_border_is_the_background(position):
    scene = shapes.Scene("square", "red", "blue", "small", position)
    pixels = np.asarray(shapes.draw(scene, 64, random.Random(0))).astype(int)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    assert np.abs(border - shapes.COLOURS["blue"]).max() <= shapes.COLOUR_JITTER
    red = np.abs(pixels - shapes.COLOURS["red"]).max(axis=2) <= shapes.COLOUR_JITTER + 1
    ys, xs = red.nonzero()
    centre_x, centre_y = xs.mean() / 64, ys.mean() / 64
    expected_x = 0.5 if position == "center" else (0.26 if "left" in position else 0.74)
    expected_y = 0.5 if position == "center" else (0.26 if "top" in position else 0.74)
    assert abs(centre_x - expected_x) < 0.06 and abs(centre_y - expected_y) < 0.06


def test_every_shape_is_clearly_visible():
    areas = {}
    for shape in shapes.SHAPES:
        scene = shapes.Scene(shape, "white", "black", "large", "center")
        pixels = np.asarray(shapes.draw(scene, 64, random.Random(0))).astype(int)
        areas[shape] = float((pixels.mean(axis=2) > 128).mean())
    # Every shape is clearly visible; the star, being thin, covers the least.
    assert min(areas.values()) > 0.08
    assert min(areas, key=areas.get) == "star"


def test_a_blob_has_the_scene_colours_and_is_none_of_the_shapes():
    scene = shapes.Scene("star", "red", "blue", "large", "center")
    for seed in range(6):
        pixels = np.asarray(shapes.draw_blob(scene, 64, random.Random(seed))).astype(int)
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert (np.abs(border - shapes.COLOURS["blue"]).max(axis=1) <= 13).mean() > 0.7
        red = np.abs(pixels - shapes.COLOURS["red"]).max(axis=2) <= shapes.COLOUR_JITTER + 1
        assert red.mean() > 0.01
        # Not the drawn shape: the blob's red pixels differ from the star's.
        star = np.asarray(shapes.draw(scene, 64, random.Random(seed))).astype(int)
        star_red = np.abs(star - shapes.COLOURS["red"]).max(axis=2) <= shapes.COLOUR_JITTER + 1
        assert (red != star_red).mean() > 0.05


def test_training_scenes_never_use_held_out_combinations():
    rng = random.Random(0)
    drawn = {shapes.random_scene(rng).combo for _ in range(3000)}
    assert not drawn & shapes.HELD_OUT
    held = {shapes.random_scene(rng, held_out=True).combo for _ in range(300)}
    assert held == set(shapes.HELD_OUT)


def test_every_shape_colour_and_background_is_still_trained():
    trained = set(shapes.TRAIN_COMBOS)
    assert {combo[0] for combo in trained} == set(shapes.SHAPES)
    assert {combo[1] for combo in trained} == set(shapes.COLOURS)
    assert {combo[2] for combo in trained} == set(shapes.COLOURS)
    assert len(shapes.SHAPES) >= 4 and len(shapes.COLOURS) >= 6


def test_prompt_for_is_the_canonical_prompt():
    assert (
        shapes.prompt_for(shapes.Scene("circle", "red", "blue", "small", "center"))
        == "a red circle on a blue background"
    )
    assert (
        shapes.prompt_for(shapes.Scene("star", "orange", "white", "large", "center"))
        == "an orange star on a white background"
    )


def test_captions_vary_and_their_facts_are_what_they_name():
    rng = random.Random(0)
    scene = shapes.Scene("triangle", "green", "yellow", "small", "bottom right")
    seen = set()
    for _ in range(300):
        state = rng.getstate()
        text, facts = shapes.caption_with_facts(scene, rng)
        rng.setstate(state)
        assert shapes.caption(scene, rng) == text
        seen.add(frozenset(facts))
        assert ("triangle" in text) == ("shape" in facts)
        assert ("green" in text) == ("colour" in facts)
    assert frozenset({"shape"}) in seen  # shape-only captions
    assert frozenset({"colour", "background"}) in seen  # colour-only captions


def test_agrees_checks_only_the_named_fields():
    scene = shapes.Scene("circle", "red", "blue", "small", "center")
    other = shapes.Scene("circle", "green", "white", "large", "top left")
    assert shapes.agrees(scene, other, frozenset({"shape"}))
    assert not shapes.agrees(scene, other, frozenset({"shape", "colour"}))


def test_bad_scenes_are_refused_with_what_to_fix():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        shapes.Scene("hexagon", "red", "blue", "small", "center")
    with pytest.raises(ValueError, match="must differ"):
        shapes.Scene("circle", "red", "red", "small", "center")
