"""Checkpoint reading in the real taming / Lightning formats, and clear errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from modelfiles import fake_lightning_class, official_yaml, small_config, write_lightning_checkpoint

from artgen.models.catalog import Catalog
from artgen.models.checkpoints import (
    CheckpointError,
    ModelUnavailable,
    load_vqgan,
    read_state_dict,
)
from artgen.models.vqgan import VQGAN, random_vqgan


def assert_same_weights(a: VQGAN, b: VQGAN) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture
def lightning_class(monkeypatch: pytest.MonkeyPatch) -> type:
    return fake_lightning_class(monkeypatch)


@pytest.fixture(scope="module")
def source() -> VQGAN:
    return random_vqgan(small_config(), seed=5)


def write_pair(tmp_path: Path, model: VQGAN, lightning_class: type, **kwargs) -> tuple[Path, Path]:
    config = tmp_path / "model.yaml"
    config.write_text(official_yaml(model.config, net2net=bool(kwargs.get("prefix"))))
    checkpoint = tmp_path / "last.ckpt"
    write_lightning_checkpoint(checkpoint, model, lightning_class, **kwargs)
    return config, checkpoint


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy"])
def test_lightning_checkpoint_with_pickled_class_loads(
    tmp_path: Path, source: VQGAN, lightning_class: type, legacy_format: bool
) -> None:
    config, checkpoint = write_pair(tmp_path, source, lightning_class, legacy_format=legacy_format)
    # The file really names the Lightning class: plain weights_only loading refuses it.
    with pytest.raises(Exception, match="ModelCheckpoint"):
        torch.load(checkpoint, weights_only=True)
    loaded = load_vqgan(config, checkpoint)
    assert_same_weights(loaded, source)
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_state_dict_drops_loss_and_strips_first_stage_prefix(
    tmp_path: Path, source: VQGAN, lightning_class: type
) -> None:
    config, checkpoint = write_pair(tmp_path, source, lightning_class, prefix="first_stage_model.")
    weights = read_state_dict(checkpoint)
    assert weights.keys() == source.state_dict().keys()
    assert_same_weights(load_vqgan(config, checkpoint), source)


def test_bare_state_dict_loads(tmp_path: Path, source: VQGAN) -> None:
    config = tmp_path / "model.yaml"
    config.write_text(official_yaml(source.config))
    checkpoint = tmp_path / "weights.pt"
    torch.save(source.state_dict(), checkpoint)
    assert_same_weights(load_vqgan(config, checkpoint), source)


def test_gumbel_checkpoint_round_trips(tmp_path: Path, lightning_class: type) -> None:
    model = random_vqgan(small_config(gumbel=True), seed=2)
    config, checkpoint = write_pair(tmp_path, model, lightning_class)
    loaded = load_vqgan(config, checkpoint)
    assert loaded.config.gumbel
    assert "quantize.proj.weight" in loaded.state_dict()
    assert_same_weights(loaded, model)


def test_catalog_add_registers_lightning_files(
    tmp_path: Path, source: VQGAN, lightning_class: type
) -> None:
    config, checkpoint = write_pair(tmp_path, source, lightning_class, prefix="first_stage_model.")
    catalog = Catalog(tmp_path / "home")
    info = catalog.add("mine", config, checkpoint)
    assert info.available and info.kind == "vqgan"
    assert_same_weights(Catalog(tmp_path / "home").build_vqgan("mine"), source)
    names = {(row.name, row.kind): row for row in catalog.list_models()}
    assert names[("mine", "vqgan")].available
    os.remove(checkpoint)
    rows = {(row.name, row.kind): row for row in catalog.list_models()}
    assert not rows[("mine", "vqgan")].available
    with pytest.raises(ModelUnavailable, match=f"missing {checkpoint}.*artgen models add mine"):
        catalog.build_vqgan("mine")


def test_catalog_add_refuses_bad_files_and_names(tmp_path: Path, source: VQGAN) -> None:
    catalog = Catalog(tmp_path / "home")
    config = tmp_path / "model.yaml"
    config.write_text(official_yaml(source.config))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        catalog.add("mine", config, bad)
    assert "mine" not in catalog.registered()
    with pytest.raises(ValueError, match="built-in"):
        catalog.add("tiny", config, bad)
    with pytest.raises(ValueError, match="letters"):
        catalog.add("../escape", config, bad)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing.ckpt: no such file"):
        read_state_dict(tmp_path / "nothing.ckpt")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt: the file is empty"):
        read_state_dict(path)


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_file_is_reported_not_raised_from_deep_in_torch(
    tmp_path: Path, source: VQGAN, lightning_class: type, legacy_format: bool, keep: float
) -> None:
    _, checkpoint = write_pair(tmp_path, source, lightning_class, legacy_format=legacy_format)
    data = checkpoint.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated.ckpt: corrupt or truncated") as caught:
        read_state_dict(truncated)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        read_state_dict(path)


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(
        CheckpointError, match="evil.ckpt: refusing to unpickle `(posix|nt).system`"
    ):
        read_state_dict(path)


def test_wrong_architecture_lists_the_differences(
    tmp_path: Path, source: VQGAN, lightning_class: type
) -> None:
    _, checkpoint = write_pair(tmp_path, source, lightning_class)
    other = tmp_path / "other.yaml"
    other.write_text(official_yaml(small_config(n_embed=128)))
    with pytest.raises(CheckpointError) as caught:
        load_vqgan(other, checkpoint)
    message = str(caught.value)
    assert message.startswith(f"{checkpoint}: does not match the architecture of other.yaml")
    assert "quantize.embedding.weight (64, 32) vs (128, 32)" in message
    gumbel = tmp_path / "gumbel.yaml"
    gumbel.write_text(official_yaml(small_config(gumbel=True)))
    with pytest.raises(CheckpointError, match=r"missing keys \(quantize\.(proj|embed)") as caught:
        load_vqgan(gumbel, checkpoint)
    assert "unexpected keys (quantize.embedding.weight)" in str(caught.value)


def test_bad_yaml_names_the_config(tmp_path: Path, source: VQGAN, lightning_class: type) -> None:
    _, checkpoint = write_pair(tmp_path, source, lightning_class)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(CheckpointError, match="broken.yaml: not valid YAML"):
        load_vqgan(broken, checkpoint)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model: {params: {n_embed: 4}}")
    with pytest.raises(CheckpointError, match="wrong.yaml: not a VQGAN config"):
        load_vqgan(wrong, checkpoint)
