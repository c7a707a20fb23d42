"""Animation: frames as Generations, iteration counts, prompt schedules, resume, restyle."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from artgen.engine.animation import Animation, AnimationParams, frame_seed
from artgen.engine.images import from_pil, to_pil
from artgen.engine.motion import warp
from artgen.engine.params import GenerationParams

CPU = torch.device("cpu")


def picture(**overrides) -> GenerationParams:
    fields = {"prompts": "a city", "width": 32, "height": 32, "iterations": 3, "cutn": 4}
    return GenerationParams(**{**fields, "seed": 5, **overrides})


def run_all(animation: Animation) -> list[torch.Tensor]:
    """Step to the end; the finished frames, in order."""
    frames = []
    while animation.frame < animation.frames:
        animation.step()
        if animation.frame_done is not None:
            frames.append(animation.frame_tensor().clone())
    return frames


class ColourFrames:
    """A FrameSource of solid frames, recording what was asked."""

    def __init__(self, colours: list[tuple[int, int, int]]) -> None:
        self.colours = colours
        self.asked: list[int] = []

    def frame(self, index: int) -> Image.Image:
        self.asked.append(index)
        return Image.new("RGB", (40, 40), self.colours[index])


def test_iteration_counts_and_frame_done_sequence(tiny_models):
    motion = AnimationParams(frames=3, iterations_per_frame=2, zoom="0:(1.1)", angle="0:(2)")
    animation = Animation(tiny_models, picture(), motion, device=CPU)
    assert (animation.iterations, animation.frames, animation.frame_iterations) == (7, 3, 3)
    seen = []
    while animation.frame < animation.frames:
        result = animation.step()
        assert result.iteration == animation.iteration
        seen.append((animation.frame, animation.frame_iteration, animation.frame_done))
    assert seen == [
        (0, 1, None), (0, 2, None), (1, 0, 0),  # frame 0: the picture's 3 iterations
        (1, 1, None), (2, 0, 1),
        (2, 1, None), (3, 2, 2),
    ]  # fmt: skip
    assert animation.iteration == animation.iterations == 7
    assert animation.frame_tensor().shape == (1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="finished"):
        animation.step()


def test_next_frame_starts_from_the_previous_frame_warped(tiny_models):
    motion = AnimationParams(
        frames=2, iterations_per_frame=1, zoom="0:(1.5)", translation_x="0:(3)"
    )
    animation = Animation(tiny_models, picture(iterations=1), motion, device=CPU)
    animation.step()
    assert animation.generation is None  # set up lazily: frame_tensor() is the finished frame
    expected = warp(animation.frame_tensor(), zoom=1.5, angle=0.0, translate_x=3.0, translate_y=0.0)
    assert torch.equal(from_pil(animation.start_image(1)), from_pil(to_pil(expected)))
    animation.step()
    assert animation.frame_done == 1


def test_prompt_schedule_switches_the_prompts_between_frames(tiny_models):
    motion = AnimationParams(
        frames=3, iterations_per_frame=2, prompt_schedule=[{"frame": 2, "prompt": "a stormy sea"}]
    )
    animation = Animation(tiny_models, picture(iterations=2), motion, device=CPU)
    used = {}
    while animation.frame < animation.frames:
        animation.step()
        if animation.generation is not None:  # mid-frame: the frame's own Generation
            used[animation.frame] = animation.generation.params.prompts
    assert used == {0: "a city", 1: "a city", 2: "a stormy sea"}


def test_frames_have_distinct_deterministic_seeds(tiny_models):
    animation = Animation(tiny_models, picture(seed=None), AnimationParams(frames=3), device=CPU)
    seeds = [animation.frame_params(k).seed for k in range(3)]
    assert seeds[0] == animation.seed  # frame 0 is the picture of the video's seed
    assert len(set(seeds)) == 3
    assert seeds == [frame_seed(animation.seed, k) for k in range(3)]
    assert all(0 <= seed < 2**63 for seed in seeds)


@pytest.mark.parametrize("stop_after", [4, 3])  # mid-frame 1; at the boundary after frame 0
def test_resume_gives_the_same_frames_as_an_uninterrupted_run(tiny_models, stop_after):
    motion = AnimationParams(frames=3, iterations_per_frame=2, zoom="0:(1.2)", angle="0:(5)")
    expected = run_all(Animation(tiny_models, picture(), motion, device=CPU))

    first = Animation(tiny_models, picture(), motion, device=CPU)
    finished = []
    for _ in range(stop_after):
        first.step()
        if first.frame_done is not None:
            finished.append(first.frame_tensor().clone())
    state = first.state_dict()
    assert (state["generation"] is None) == (stop_after == 3)
    assert state["frame"] == 1

    resumed = Animation(tiny_models, picture(), motion, device=CPU)
    resumed.load_state_dict(state)
    assert (resumed.frame, resumed.iteration) == (1, stop_after)
    assert resumed.frame_iteration == stop_after - 3
    frames = finished + run_all(resumed)
    assert len(frames) == 3
    for made, wanted in zip(frames, expected, strict=True):
        assert torch.equal(made, wanted)


def test_restyle_with_coherence_0_starts_from_the_source_frame(tiny_models):
    source = ColourFrames([(200, 30, 30), (30, 200, 30), (30, 30, 200)])
    motion = AnimationParams(frames=3, iterations_per_frame=1, coherence=0.0)
    animation = Animation(tiny_models, picture(iterations=1), motion, device=CPU, source=source)
    assert source.asked == [0]  # frame 0 starts from the source's first frame
    animation.step()
    start = from_pil(animation.start_image(1))
    assert torch.allclose(start, from_pil(Image.new("RGB", (32, 32), (30, 200, 30))), atol=1 / 255)
    run_all(animation)
    assert sorted(source.asked) == source.asked and source.asked[-1] == 2


def test_restyle_coherence_blends_the_previous_frame(tiny_models):
    source = ColourFrames([(0, 0, 0), (255, 255, 255)])
    motion = AnimationParams(frames=2, iterations_per_frame=1, coherence=0.25)
    animation = Animation(tiny_models, picture(iterations=1), motion, device=CPU, source=source)
    animation.step()
    previous = animation.frame_tensor()
    start = from_pil(animation.start_image(1))
    assert torch.allclose(start, previous * 0.25 + 0.75, atol=1 / 255)


def test_bad_state_is_refused(tiny_models):
    animation = Animation(tiny_models, picture(), AnimationParams(frames=2), device=CPU)
    state = animation.state_dict()
    with pytest.raises(ValueError, match="version"):
        animation.load_state_dict({**state, "version": 99})
    with pytest.raises(ValueError, match="outside"):
        animation.load_state_dict({**state, "frame": 5})


def test_each_distinct_prompt_is_embedded_once_per_video(tiny_models, monkeypatch):
    critic = tiny_models.critics[0]
    embedded: list[list[str]] = []
    encode_text = critic.encode_text

    def counting(texts: list[str]) -> torch.Tensor:
        embedded.append(list(texts))
        return encode_text(texts)

    monkeypatch.setattr(critic, "encode_text", counting)
    motion = AnimationParams(
        frames=4, iterations_per_frame=1, prompt_schedule=[{"frame": 2, "prompt": "a stormy sea"}]
    )
    run_all(Animation(tiny_models, picture(iterations=1), motion, device=CPU))
    assert embedded == [["a city"], ["a stormy sea"]]
