"""AnimationParams: defaults, schedule errors naming the field and position, prompt schedules."""

import pytest
from pydantic import ValidationError

from artgen.engine.animation_params import AnimationParams


def errors(**fields) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        AnimationParams(**fields)
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


def test_defaults_and_helpers():
    params = AnimationParams(zoom="0:(1.02), 60:(1.0)")
    assert (params.frames, params.iterations_per_frame, params.fps) == (30, 10, 12)
    assert params.keyframes("zoom").at(30) == pytest.approx(1.01)
    assert params.keyframes("angle").points == ((0, 0.0),)
    assert params.total_iterations(100) == 100 + 29 * 10
    with pytest.raises(ValueError, match="not a motion schedule"):
        params.keyframes("frames")


def test_bad_schedule_names_the_field_and_position():
    [(location, message)] = errors(translation_x="0:(0), 30:2")
    assert location == ("translation_x",)
    assert "translation_x: position 10: expected '(' after ':'" in message
    [(location, message)] = errors(angle="")
    assert location == ("angle",) and "angle: position 0: empty" in message


def test_zoom_must_stay_above_zero():
    [(location, message)] = errors(zoom="0:(1), 10:(-0.5)")
    assert location == ("zoom",) and "frame 10 has zoom -0.5" in message


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"frames": 0}, ("frames",)),
        ({"frames": 10_001}, ("frames",)),
        ({"iterations_per_frame": 0}, ("iterations_per_frame",)),
        ({"fps": 61}, ("fps",)),
        ({"coherence": 1.5}, ("coherence",)),
        ({"coherence": float("nan")}, ("coherence",)),
        ({"prompt_schedule": [{"frame": 1, "prompt": " "}]}, ("prompt_schedule", 0, "prompt")),
        ({"prompt_schedule": [{"frame": 1, "prompt": "a\x07b"}]}, ("prompt_schedule", 0, "prompt")),
        ({"prompt_schedule": [{"frame": -1, "prompt": "a"}]}, ("prompt_schedule", 0, "frame")),
        ({"prompt_schedule": [{"frame": 1, "prompt": "a", "at": 2}]}, ("prompt_schedule", 0, "at")),
        ({"zoom_speed": 2}, ("zoom_speed",)),
    ],
)
def test_bad_fields_are_named(fields, location):
    assert errors(**fields)[0][0] == location


def test_duplicate_prompt_schedule_frames_are_refused():
    schedule = [{"frame": 3, "prompt": "a"}, {"frame": 3, "prompt": "b"}]
    assert "same frame" in errors(prompt_schedule=schedule)[0][1]


def test_prompts_at_takes_the_latest_entry_at_or_before_the_frame():
    params = AnimationParams(
        prompt_schedule=[{"frame": 20, "prompt": "night"}, {"frame": 5, "prompt": "dusk"}]
    )
    assert [params.prompts_at(frame, "day") for frame in (0, 4, 5, 19, 20, 99)] == [
        "day", "day", "dusk", "dusk", "night", "night",
    ]  # fmt: skip
