"""The quality judge on drawn scenes: the procedural colour reading and the shape classifier."""

import random

import pytest
import torch
from PIL import Image

from artgen.training import judge, shapes


def drawn(count, seed, side):
    rng = random.Random(seed)
    scenes = [shapes.random_scene(rng, held_out=index % 4 == 0) for index in range(count)]
    return scenes, [shapes.draw(scene, side, rng) for scene in scenes]


@pytest.mark.parametrize("side", [32, 64, 128])
def test_read_colours_names_background_and_shape_colour_of_every_drawn_scene(side):
    scenes, images = drawn(150, seed=side, side=side)
    for scene, image in zip(scenes, images, strict=True):
        reading = judge.read_colours(image)
        assert (reading.background, reading.colour) == (scene.background, scene.colour), scene
        assert 0 < reading.shape_fraction < 0.6


def test_read_colours_every_pairing_including_the_closest_colours():
    rng = random.Random(1)
    for shape, colour, background in shapes.all_combos():
        image = shapes.draw(shapes.Scene(shape, colour, background, "small", "center"), 64, rng)
        reading = judge.read_colours(image)
        assert (reading.background, reading.colour) == (background, colour)


def test_read_colours_of_a_flat_picture_finds_no_shape():
    reading = judge.read_colours(Image.new("RGB", (64, 64), shapes.COLOURS["green"]))
    assert reading == judge.ColourReading("green", None, 0.0)


def test_read_colours_background_survives_a_shape_across_the_border():
    # A large star in a corner covers part of the border ring; most of it is still background.
    scene = shapes.Scene("star", "yellow", "purple", "large", "top left")
    reading = judge.read_colours(shapes.draw(scene, 64, random.Random(3)))
    assert (reading.background, reading.colour) == ("purple", "yellow")


def test_read_colours_with_noise_and_blur():
    from PIL import ImageFilter

    scenes, images = drawn(60, seed=7, side=64)
    noise = random.Random(0)
    correct = 0
    for scene, image in zip(scenes, images, strict=True):
        blurred = image.filter(ImageFilter.GaussianBlur(1.5))
        noisy = Image.eval(blurred, lambda value: min(255, max(0, value + noise.randint(-20, 20))))
        reading = judge.read_colours(noisy)
        correct += (reading.background, reading.colour) == (scene.background, scene.colour)
    assert correct == len(scenes)


def test_shipped_classifier_is_above_95_percent_on_clean_drawings():
    classifier = judge.ShapeJudge.load()
    scenes, images = drawn(400, seed=12345, side=64)
    predicted = classifier.classify(images)
    accuracy = sum(p == s.shape for p, s in zip(predicted, scenes, strict=True)) / len(scenes)
    assert accuracy > 0.95


def test_shipped_classifier_reads_128_pixel_drawings_too():
    classifier = judge.ShapeJudge.load()
    scenes, images = drawn(200, seed=54321, side=128)
    predicted = classifier.classify(images)
    accuracy = sum(p == s.shape for p, s in zip(predicted, scenes, strict=True)) / len(scenes)
    assert accuracy > 0.95


def test_classifier_ignores_colour():
    # The same geometry in other colours: the classifier sees only the foreground map.
    classifier = judge.ShapeJudge.load()
    rng_a, rng_b = random.Random(9), random.Random(9)
    first = shapes.draw(shapes.Scene("star", "red", "blue", "large", "center"), 64, rng_a)
    second = shapes.draw(shapes.Scene("star", "yellow", "black", "large", "center"), 64, rng_b)
    maps = judge.foreground_map(judge.to_batch([first, second]))
    assert torch.allclose(maps[0], maps[1], atol=0.15)
    assert classifier.classify([first, second]) == ["star", "star"]


def test_missing_weights_say_how_to_train_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m artgen.training.judge --train"):
        judge.ShapeJudge.load(tmp_path / "absent.pt")


def test_training_a_few_steps_runs_and_is_reproducible():
    first, report = judge.train_classifier(
        steps=3, batch_size=8, pictures=32, seed=4, test_pictures=16
    )
    second, _ = judge.train_classifier(steps=3, batch_size=8, pictures=32, seed=4, test_pictures=16)
    assert report.steps == 3 and 0 <= report.clean_accuracy <= 1
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_augment_keeps_shape_and_range():
    images, _ = judge.drawn_set(8, seed=0)
    augmented = judge.augment(images.clone(), torch.Generator().manual_seed(0))
    assert augmented.shape == images.shape
    assert float(augmented.min()) >= 0 and float(augmented.max()) <= 1
    assert not torch.equal(augmented, images)
