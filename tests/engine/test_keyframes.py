"""Keyframe schedules: Deforum syntax, linear interpolation, and errors that say where."""

import pytest

from artgen.engine.keyframes import KeyframeError, Keyframes


def test_parses_deforum_syntax_with_blanks_negatives_and_decimals():
    keyframes = Keyframes.parse(" 60 : ( 1.0 ) ,0:(1.02), 10:(-0.5), 20:(.5e1),")
    assert keyframes.points == ((0, 1.02), (10, -0.5), (20, 5.0), (60, 1.0))


def test_interpolates_linearly_and_is_constant_outside():
    keyframes = Keyframes.parse("10:(1), 20:(3)")
    assert keyframes.at(0) == 1
    assert keyframes.at(10) == 1
    assert keyframes.at(15) == pytest.approx(2)
    assert keyframes.at(17) == pytest.approx(2.4)
    assert keyframes.at(20) == 3
    assert keyframes.at(1000) == 3


def test_single_keyframe_is_constant():
    keyframes = Keyframes.parse("0:(0.5)")
    assert [keyframes.at(frame) for frame in (0, 1, 99)] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("0:1", 2, "expected '(' after ':'"),
        ("0:(1", 4, "expected ')'"),
        ("0(1)", 1, "expected ':'"),
        ("0:(x)", 3, "expected a number"),
        ("0:(nan)", 3, "expected a number"),
        ("0:(inf)", 3, "expected a number"),
        ("0:(1e999)", 3, "not a finite number"),
        ("-1:(1)", 0, "negative"),
        ("0:(1), 0:(2)", 7, "frame 0 appears twice"),
        ("0:(1) 5:(2)", 6, "expected ','"),
        ("0:(1), 5:(2), x", 14, "expected a frame number"),
        ("99999999999:(1)", 0, "above"),
        ("garbage", 0, "expected a frame number"),
    ],
)
def test_bad_schedules_name_the_position(text, position, words):
    with pytest.raises(KeyframeError) as caught:
        Keyframes.parse(text)
    assert caught.value.position == position
    assert str(caught.value).startswith(f"position {position}: ")
    assert words in str(caught.value)


def test_keyframe_error_is_a_value_error():
    with pytest.raises(ValueError, match="position 2"):
        Keyframes.parse("0:1")
