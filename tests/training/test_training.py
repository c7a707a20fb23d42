"""The demo trainers on a few tiny steps: resumable, and their files load through the catalog's
loaders strictly."""

import copy
import dataclasses
import json

import torch

from artgen.models.checkpoints import load_vqgan
from artgen.models.demo import config_critic
from artgen.training import clip as clip_training
from artgen.training import clip_shapes, demo
from artgen.training import vqgan as vqgan_training
from artgen.training.data import scene_batch, step_rng

VQGAN_TINY = vqgan_training.VQGANTraining(
    steps=3, batch_size=2, autoencoder_steps=1, kmeans_batches=1, restart_every=1, eval_pictures=4
)
CLIP_TINY = clip_training.ClipTraining(steps=1, batch_size=4, warmup_steps=1, eval_pictures=4)
SHAPES_TINY = clip_shapes.ShapeTraining(
    steps=2, batch_size=4, blobs=2, random_decodes=2, reconstructed_fraction=0.5, eval_pictures=4
)


def test_vqgan_training_resumes_exactly():
    straight = vqgan_training.VQGANTrainer(VQGAN_TINY)
    for _ in range(3):
        straight.train_step()
    first = vqgan_training.VQGANTrainer(VQGAN_TINY)
    for _ in range(2):
        first.train_step()
    resumed = vqgan_training.VQGANTrainer(VQGAN_TINY)
    resumed.load(first.state())
    resumed.train_step()
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_codebook_starts_from_encoder_outputs():
    trainer = vqgan_training.VQGANTrainer(VQGAN_TINY)
    before = trainer.model.quantize.codebook.detach().clone()
    trainer.train_step()  # autoencoder step
    trainer.train_step()  # k-means initialisation, then the first quantised step
    after = trainer.model.quantize.codebook.detach()
    # taming's uniform(-1/n, 1/n) start is replaced by k-means centres of encoder outputs.
    assert before.abs().max() <= 1 / before.shape[0]
    assert after.abs().max() > 10 / before.shape[0]


def test_a_scaled_latent_decodes_the_same_and_steps_as_a_larger_step_size_would():
    original = vqgan_training.VQGANTrainer(VQGAN_TINY).model.eval().requires_grad_(False)
    scaled = vqgan_training.scale_latent(copy.deepcopy(original), 0.1)
    pictures = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(scaled.encode(pictures), original.encode(pictures) * 0.1, atol=1e-6)
    assert torch.allclose(scaled(pictures), original(pictures), atol=1e-5)
    assert torch.allclose(scaled.codebook, original.codebook * 0.1)
    # The engine's update (Adam on z through snap and decode) at step size 0.1 on the scaled
    # model follows the one at 1.0 on the original, scaled.
    target = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    start = original.codebook[torch.arange(64) % len(original.codebook)].T.reshape(1, -1, 8, 8)
    latents = []
    for model, lr, z in ((original, 1.0, start), (scaled, 0.1, start * 0.1)):
        z = z.clone().requires_grad_(True)
        adam = torch.optim.Adam([z], lr=lr)
        for _ in range(3):
            adam.zero_grad()
            (model.decode(model.snap(z)) - target).pow(2).sum().backward()
            adam.step()
        latents.append(z.detach())
    assert torch.allclose(latents[1], latents[0] * 0.1, atol=1e-4)  # Adam's epsilon differs


def test_a_densified_codebook_holds_k_means_centres_of_the_encoder_outputs():
    trainer = vqgan_training.VQGANTrainer(dataclasses.replace(VQGAN_TINY, steps=6))
    for _ in range(6):
        trainer.train_step()
    original = trainer.model.eval().requires_grad_(False)
    coarse = vqgan_training.densify_codebook(copy.deepcopy(original), 64, seed=0, pictures=128)
    dense = vqgan_training.densify_codebook(copy.deepcopy(original), 1024, seed=0, pictures=128)
    assert dense.codebook.shape == (1024, 32) and dense.config.n_embed == 1024
    assert original.codebook.shape == (512, 32)  # the model densified is a copy
    assert not dense.codebook.requires_grad  # as the codebook it replaced

    # The encoder outputs on the pictures it was fitted on (2 batches of 64, seed 0): 16 times
    # the centres sit closer to them (k-means' squared distortion about 0.6 of the coarse
    # one's on this model). Not the codes' spacing among themselves: in 32 dimensions 16 times
    # the codes bring them only a few percent closer, within a 6-step model's rounding.
    points = torch.cat(
        [
            vqgan_training.flat_latents(
                original, scene_batch(step_rng(0, index, "vqgan-densify"), 64, 64)[1]
            )
            for index in range(2)
        ]
    )

    def distortion(model) -> float:
        return float(torch.cdist(points, model.codebook).min(1).values.pow(2).mean())

    assert distortion(dense) < 0.8 * distortion(coarse)
    assert distortion(coarse) < distortion(original)  # the trained codebook: not fitted there


def test_the_vqgan_stage_writes_a_densified_codebook_in_its_yaml_and_checkpoint(tmp_path):
    training = dataclasses.replace(VQGAN_TINY, final_codes=640, densify_pictures=64)
    demo.train_vqgan_stage(tmp_path, training, torch.device("cpu"), save_every=2)
    model = load_vqgan(tmp_path / demo.VQGAN_CONFIG_FILE, tmp_path / demo.VQGAN_CHECKPOINT_FILE)
    assert model.codebook.shape == (640, 32)


def test_kmeans_finds_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(50, 2, generator=generator) * 0.1 + c for c in (-5, 5)])
    centres = vqgan_training.kmeans(points, 2, generator)
    assert sorted(round(float(c)) for c in centres[:, 0]) == [-5, 5]


def test_vqgan_stage_writes_a_taming_checkpoint_the_loader_takes_strictly(tmp_path):
    demo.train_vqgan_stage(tmp_path, VQGAN_TINY, torch.device("cpu"), save_every=2)
    checkpoint = torch.load(tmp_path / demo.VQGAN_CHECKPOINT_FILE, weights_only=True)
    assert set(checkpoint) == {"state_dict", "global_step", "epoch"}
    model = load_vqgan(tmp_path / demo.VQGAN_CONFIG_FILE, tmp_path / demo.VQGAN_CHECKPOINT_FILE)
    assert model.factor == 8 and model.codebook.shape == (512, 32)
    log = json.loads((tmp_path / demo.LOG_FILE).read_text())
    assert log["vqgan"]["step"] == 3 and "psnr_held_out_combos" in log["vqgan"]


def test_clip_batch_targets_count_every_true_caption():
    images, texts, targets, labels = clip_training.training_batch(CLIP_TINY, 0, torch.device("cpu"))
    assert labels.shape == (4, 3)
    assert images.shape == (4, 3, 64, 64) and len(texts) == 8 and targets.shape == (4, 8)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    assert (targets.diagonal() > 0).all()  # a picture's own caption is always a positive
    again = clip_training.training_batch(CLIP_TINY, 0, torch.device("cpu"))
    assert torch.equal(images, again[0]) and texts == again[1]


def test_clip_stages_write_weights_the_critic_loader_takes_strictly(tmp_path):
    demo.train_vqgan_stage(tmp_path, VQGAN_TINY, torch.device("cpu"), save_every=2)
    training = dataclasses.replace(CLIP_TINY, steps=2)
    demo.train_clip_stage(tmp_path, training, torch.device("cpu"), save_every=1)
    assert (tmp_path / demo.CLIP_BASE_WEIGHTS_FILE).exists()
    assert not (tmp_path / demo.CLIP_WEIGHTS_FILE).exists()  # the shape stage writes it
    demo.train_clip_shapes_stage(tmp_path, SHAPES_TINY, torch.device("cpu"), save_every=1)
    critic = config_critic(
        tmp_path / demo.CLIP_CONFIG_FILE, tmp_path / demo.CLIP_WEIGHTS_FILE, "demo"
    )
    assert critic.cut_size == 64
    embeddings = critic.encode_text(["a red square on a blue background"])
    assert embeddings.shape == (1, clip_training.DEMO_CLIP_CONFIG["embed_dim"])
    log = json.loads((tmp_path / demo.LOG_FILE).read_text())
    assert "zero_shot" in log["clip"] and "linear_shape" in log["clip"]
    assert log["clip_shapes"]["step"] == 2 and "linear_shape" in log["clip_shapes"]
    base = torch.load(tmp_path / demo.CLIP_BASE_WEIGHTS_FILE, weights_only=True)
    final = torch.load(tmp_path / demo.CLIP_WEIGHTS_FILE, weights_only=True)
    assert set(base) == set(final)
    assert not torch.equal(base["visual.conv1.weight"], final["visual.conv1.weight"])


def _shape_trainer() -> clip_shapes.ShapeClipTrainer:
    vqgan = vqgan_training.VQGANTrainer(VQGAN_TINY).model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = clip_training.build_clip().state_dict()
    return clip_shapes.ShapeClipTrainer(SHAPES_TINY, base, vqgan)


def test_clip_shape_stage_resumes_exactly():
    straight = _shape_trainer()
    for _ in range(2):
        straight.train_step()
    first = _shape_trainer()
    first.train_step()
    resumed = _shape_trainer()
    resumed.load(first.state())
    resumed.train_step()
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name


def test_clip_shape_stage_negatives_are_labelled_no_shape():
    trainer = _shape_trainer()
    images, labels = trainer.negatives(0, torch.Generator().manual_seed(0))
    count = SHAPES_TINY.blobs + SHAPES_TINY.random_decodes
    assert images.shape == (count, 3, 64, 64) and labels.shape == (count, 5)
    assert (labels[:, 0] == clip_shapes.NO_SHAPE).all()
    assert (labels[SHAPES_TINY.blobs :, 1:] == -100).all()  # a random decode's colours: unknown
    assert (labels[: SHAPES_TINY.blobs, 1:3] >= 0).all()  # a blob's colours are known


def test_clip_shape_stage_with_an_attack_takes_a_step():
    trainer = _shape_trainer()
    trainer.training = dataclasses.replace(SHAPES_TINY, epsilon=4 / 255)
    losses = trainer.train_step()
    assert set(losses) == {"image_loss", "text_loss", "head_loss"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
