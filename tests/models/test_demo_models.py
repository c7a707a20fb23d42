"""The shipped demo models: present, small, their sha256 in the catalog, loaded strictly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from artgen.config import Settings
from artgen.models import demo
from artgen.models.catalog import Catalog
from artgen.models.checkpoints import CheckpointError, load_vqgan, read_state_dict
from artgen.models.downloads import sha256_file
from artgen.models.presets import DEMO, DEMO_SHA256
from artgen.models.vqgan import VQGAN

FILES = (demo.VQGAN_CONFIG, demo.VQGAN_CHECKPOINT, demo.CLIP_CONFIG, demo.CLIP_WEIGHTS)


def test_the_files_are_in_the_package_with_the_catalogs_sha256():
    for name in FILES:
        path = demo.demo_dir() / name
        assert path.is_file(), path
        assert sha256_file(path) == DEMO_SHA256[name], name


def test_the_demo_files_fit_in_25_mb():
    assert demo.total_bytes() <= 25 * 1024 * 1024


def test_the_vqgan_is_a_taming_lightning_checkpoint_that_loads_strictly():
    checkpoint = torch.load(demo.demo_dir() / demo.VQGAN_CHECKPOINT, weights_only=True)
    assert isinstance(checkpoint["state_dict"], dict)
    model = load_vqgan(demo.demo_dir() / demo.VQGAN_CONFIG, demo.demo_dir() / demo.VQGAN_CHECKPOINT)
    weights = read_state_dict(demo.demo_dir() / demo.VQGAN_CHECKPOINT)
    assert set(weights) == set(model.state_dict())  # nothing missing, nothing left over
    assert model.factor == 8


def test_the_catalog_builds_both_demo_models(models_home: Path):
    catalog = Catalog(models_home)
    vqgan = catalog.build_vqgan(DEMO)
    critic = catalog.build_critic(DEMO)
    assert isinstance(vqgan, VQGAN) and critic.name == "demo" and critic.cut_size == 64
    pictures = torch.rand(2, 3, 64, 64)
    assert vqgan(pictures * 2 - 1).shape == (2, 3, 64, 64)
    image = critic.encode_image(pictures)
    text = critic.encode_text(["a red square on a blue background"])
    assert image.shape[1] == text.shape[1]
    assert DEMO in catalog.vqgan_names() and DEMO in catalog.clip_names()
    listed = {(info.name, info.kind): info for info in catalog.list_models()}
    assert listed[(DEMO, "vqgan")].available and listed[(DEMO, "clip")].available


def test_the_demo_vqgan_reconstructs_the_shapes_it_was_trained_on():
    import random

    from artgen.training import shapes
    from artgen.training.data import to_tensor
    from artgen.training.vqgan import psnr

    model = demo.demo_vqgan(DEMO_SHA256)
    rng = random.Random(5)
    scenes = [shapes.random_scene(rng, held_out=True) for _ in range(8)]
    pictures = to_tensor([shapes.draw(scene, 64, rng) for scene in scenes])
    with torch.no_grad():
        reconstruction = (model(pictures * 2 - 1) + 1) / 2
    assert float(psnr(reconstruction, pictures).mean()) > 20


def test_model_demo_selects_the_demo_clip_too():
    assert Settings(model="demo").resolved_clip_models == ["demo"]
    assert Settings(model="demo", clip_model="tiny").resolved_clip_models == ["tiny"]
    assert Settings(model="wikiart_16384").clip_models_for("demo") == ["demo"]
    assert Settings(model="demo").clip_models_for("wikiart_16384") == ["ViT-B-32/openai"]


@pytest.mark.parametrize("name", [demo.VQGAN_CHECKPOINT, demo.CLIP_WEIGHTS])
def test_a_changed_file_is_refused_with_its_digest(tmp_path: Path, name: str):
    for file in FILES:
        shutil.copy(demo.demo_dir() / file, tmp_path / file)
    with (tmp_path / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        demo.checked_file(name, DEMO_SHA256, tmp_path)


def test_a_missing_file_says_how_to_get_it_back(tmp_path: Path):
    with pytest.raises(CheckpointError, match="reinstall artgen or retrain"):
        demo.checked_file(demo.CLIP_CONFIG, DEMO_SHA256, tmp_path)


def test_demo_is_not_a_name_users_can_register(models_home: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="built-in preset"):
        Catalog(models_home).add(DEMO, tmp_path / "x.yaml", tmp_path / "x.ckpt")


def test_a_server_on_model_demo_lists_both_demo_models_as_defaults(tmp_path: Path):
    from fastapi.testclient import TestClient

    from artgen.api.app import create_app
    from support import make_settings

    app = create_app(make_settings(tmp_path, model="demo", worker=False))
    with TestClient(app) as client:
        models = client.get("/v1/models").json()
        vqgan = {entry["name"]: entry for entry in models["vqgan"]}
        clip = {entry["name"]: entry for entry in models["clip"]}
        assert vqgan["demo"]["available"] and vqgan["demo"]["default"]
        assert clip["demo"]["available"] and clip["demo"]["default"]
        # A job naming only the demo VQGAN runs with the demo CLIP.
        body = {"prompt": "a red square on a blue background", "width": 64, "height": 64}
        created = client.post("/v1/jobs", json={**body, "model": "demo"})
        assert created.status_code == 202, created.text
        job = client.get(f"/v1/jobs/{created.json()['id']}").json()
        assert job["params"]["clip_models"] == ["demo"]
