"""presets: the named models' table is consistent, and the built-ins need no file."""

from __future__ import annotations

from artgen.models.presets import (
    CLIP_PRESETS,
    DEFAULT_CLIP,
    DEFAULT_VQGAN,
    NAME_PATTERN,
    VQGAN_PRESETS,
    packaged_config,
    tiny_vqgan,
)


def test_every_preset_is_filed_under_its_own_name_and_the_defaults_are_presets() -> None:
    assert all(name == preset.name for name, preset in VQGAN_PRESETS.items())
    assert all(name == preset.name for name, preset in CLIP_PRESETS.items())
    assert DEFAULT_VQGAN in VQGAN_PRESETS and DEFAULT_CLIP in CLIP_PRESETS
    assert all(NAME_PATTERN.match(name) for name in VQGAN_PRESETS)


def test_a_known_clip_digest_is_the_one_its_url_names() -> None:
    # OpenAI's URLs carry the file's sha256: the digest checked on download must be that one.
    for preset in CLIP_PRESETS.values():
        assert preset.sha256 is None or preset.sha256 in preset.url


def test_the_tiny_vqgan_is_built_from_the_packaged_config_with_no_file() -> None:
    config = packaged_config("tiny")
    model = tiny_vqgan()
    assert model.codebook.shape == (config.n_embed, config.embed_dim)
    assert model.factor == 2 ** (len(config.ch_mult) - 1)
