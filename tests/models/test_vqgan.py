"""VQGAN architecture: taming's parameter names and shapes, config parsing, encode/decode."""

from __future__ import annotations

import pytest
import torch
from modelfiles import official_yaml, small_config

from artgen.models.presets import packaged_config, tiny_vqgan
from artgen.models.quantizers import GumbelQuantizer
from artgen.models.vqgan import VQGAN, VQGANConfig, random_vqgan


def taming_shapes(c: VQGANConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a taming VQModel/GumbelVQ (minus `loss.*`), written out
    from taming's constructor rules independently of our module code."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def norm(name: str, ch: int) -> None:
        shapes[f"{name}.weight"] = (ch,)
        shapes[f"{name}.bias"] = (ch,)

    def resnet(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(name: str, ch: int) -> None:
        norm(f"{name}.norm", ch)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", ch, ch, 1)

    levels = len(c.ch_mult)
    in_mult = (1, *c.ch_mult)
    conv("encoder.conv_in", c.in_channels, c.ch, 3)
    res = c.resolution
    for i in range(levels):
        cin = c.ch * in_mult[i]
        for j in range(c.num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", cin, c.ch * c.ch_mult[i])
            cin = c.ch * c.ch_mult[i]
            if res in c.attn_resolutions:
                attn(f"encoder.down.{i}.attn.{j}", cin)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", cin, cin, 3)
            res //= 2
    top = c.ch * c.ch_mult[-1]
    for part in ("encoder", "decoder"):
        resnet(f"{part}.mid.block_1", top, top)
        attn(f"{part}.mid.attn_1", top)
        resnet(f"{part}.mid.block_2", top, top)
    norm("encoder.norm_out", top)
    conv("encoder.conv_out", top, c.z_channels, 3)
    conv("decoder.conv_in", c.z_channels, top, 3)
    cin = top
    for i in reversed(range(levels)):
        for j in range(c.num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", cin, c.ch * c.ch_mult[i])
            cin = c.ch * c.ch_mult[i]
            if res in c.attn_resolutions:
                attn(f"decoder.up.{i}.attn.{j}", cin)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", cin, cin, 3)
            res *= 2
    norm("decoder.norm_out", cin)
    conv("decoder.conv_out", cin, c.out_ch, 3)
    if c.gumbel:
        conv("quantize.proj", c.z_channels, c.n_embed, 1)
        shapes["quantize.embed.weight"] = (c.n_embed, c.embed_dim)
    else:
        shapes["quantize.embedding.weight"] = (c.n_embed, c.embed_dim)
    conv("quant_conv", c.z_channels, c.embed_dim, 1)
    conv("post_quant_conv", c.embed_dim, c.z_channels, 1)
    return shapes


def meta_model(config: VQGANConfig) -> VQGAN:
    with torch.device("meta"):
        return VQGAN(config)


def our_shapes(model: VQGAN) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


GUMBEL_F8 = VQGANConfig(
    ch=128,
    out_ch=3,
    ch_mult=(1, 1, 2, 4),
    num_res_blocks=2,
    attn_resolutions=(32,),
    in_channels=3,
    resolution=256,
    z_channels=256,
    n_embed=8192,
    embed_dim=256,
    gumbel=True,
)


@pytest.mark.parametrize(
    "config",
    [packaged_config("f16_16384"), packaged_config("tiny"), GUMBEL_F8, small_config()],
    ids=["f16_16384", "tiny", "gumbel_f8_8192", "small"],
)
def test_parameter_names_and_shapes_match_taming(config: VQGANConfig) -> None:
    assert our_shapes(meta_model(config)) == taming_shapes(config)


def test_real_f16_16384_keys_spot_check() -> None:
    # Names and shapes as they appear in vqgan_imagenet_f16_16384 last.ckpt.
    shapes = our_shapes(meta_model(packaged_config("f16_16384")))
    assert shapes["quantize.embedding.weight"] == (16384, 256)
    assert shapes["encoder.down.2.block.0.nin_shortcut.weight"] == (256, 128, 1, 1)
    assert shapes["encoder.down.4.attn.1.proj_out.weight"] == (512, 512, 1, 1)
    assert shapes["decoder.up.4.attn.2.q.weight"] == (512, 512, 1, 1)
    assert shapes["decoder.up.3.block.0.nin_shortcut.weight"] == (256, 512, 1, 1)
    assert shapes["decoder.up.1.upsample.conv.weight"] == (128, 128, 3, 3)
    assert "encoder.down.4.downsample.conv.weight" not in shapes
    assert "decoder.up.0.upsample.conv.weight" not in shapes
    assert not any("temb" in key for key in shapes)


def test_state_dict_round_trips_strictly() -> None:
    source = random_vqgan(small_config(), seed=3)
    target = VQGAN(small_config())
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(source(x), target.eval()(x))


def test_config_from_official_yaml_layouts() -> None:
    config = small_config()
    assert VQGANConfig.from_yaml(official_yaml(config)) == config
    assert VQGANConfig.from_yaml(official_yaml(config, net2net=True)) == config
    gumbel = VQGANConfig.from_yaml(official_yaml(small_config(gumbel=True)))
    assert gumbel.gumbel and gumbel.n_embed == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: {}", "no `model` section"),
        ("model: {params: {n_embed: 4, embed_dim: 4}}", "ddconfig"),
        ("model: {params: {ddconfig: {ch: 32}, n_embed: 4, embed_dim: 4}}", "missing out_ch"),
    ],
)
def test_config_errors_name_what_is_missing(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VQGANConfig.from_yaml(text)


@pytest.mark.parametrize(("height", "width"), [(16, 16), (32, 48), (64, 64)])
def test_tiny_encode_decode_shapes(tiny_models, height: int, width: int) -> None:
    vqgan = tiny_models.vqgan
    assert vqgan.factor == 16
    x = torch.rand(2, 3, height, width) * 2 - 1
    with torch.no_grad():
        z = vqgan.encode(x)
        assert z.shape == (2, 32, height // 16, width // 16)
        image = vqgan.decode(vqgan.snap(z))
    assert image.shape == (2, 3, height, width)
    assert torch.isfinite(image).all()
    assert vqgan.codebook.shape == (256, 32)


def test_gumbel_encode_gives_code_vectors() -> None:
    model = random_vqgan(small_config(gumbel=True))
    assert isinstance(model.quantize, GumbelQuantizer)
    with torch.no_grad():
        z = model.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert z.shape == (1, 32, 8, 8)
    vectors = z.permute(0, 2, 3, 1).reshape(-1, 32)
    # Every latent position is exactly one codebook row (deterministic arg-max, no noise).
    assert (
        torch.cdist(vectors, model.codebook, compute_mode="donot_use_mm_for_euclid_dist")
        .min(1)
        .values
        < 1e-5
    ).all()
    with torch.no_grad():
        assert torch.equal(
            model.encode(torch.zeros(1, 3, 16, 16)), model.encode(torch.zeros(1, 3, 16, 16))
        )
        assert model.decode(z).shape == (1, 3, 16, 16)


def test_snap_picks_nearest_code_with_straight_through_gradient() -> None:
    model = random_vqgan(small_config())
    codes = model.codebook[torch.tensor([3, 5, 7, 9])]  # (4, D)
    z = (codes + 0.01).T.reshape(1, 32, 2, 2).clone().requires_grad_(True)
    snapped = model.snap(z)
    assert torch.allclose(snapped.detach(), codes.T.reshape(1, 32, 2, 2), atol=1e-6)
    snapped.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_recomputed_decode_matches_decode(tiny_models) -> None:
    vqgan = tiny_models.vqgan
    z = torch.randn(1, vqgan.codebook.shape[1], 2, 2, generator=torch.Generator().manual_seed(0))
    plain_z = z.clone().requires_grad_(True)
    recomputed_z = z.clone().requires_grad_(True)
    plain = vqgan.decode(plain_z)
    recomputed = vqgan.decode(recomputed_z, recompute=True)
    assert torch.allclose(plain, recomputed, atol=1e-6)
    plain.square().sum().backward()
    recomputed.square().sum().backward()
    assert torch.allclose(plain_z.grad, recomputed_z.grad, atol=1e-5)
    # The blocks' activations are recomputed in backward: fewer tensors kept for backward.
    assert saved_for_backward(vqgan, recompute=True) < saved_for_backward(vqgan, recompute=False)


def saved_for_backward(vqgan: VQGAN, *, recompute: bool) -> int:
    """How many tensors a decode keeps for its backward pass."""
    z = torch.randn(1, vqgan.codebook.shape[1], 2, 2, requires_grad=True)
    count = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        vqgan.decode(z, recompute=recompute)
    return count


def test_tiny_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, second = tiny_vqgan(), tiny_vqgan()
    assert torch.equal(torch.rand(1), expected_next)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in first.parameters())


def test_channels_last_and_bf16_autocast(tiny_models) -> None:
    vqgan = tiny_models.vqgan
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        reference = vqgan.decode(vqgan.encode(x))
        channels_last = VQGAN(vqgan.config)
        channels_last.load_state_dict(vqgan.state_dict())
        channels_last = channels_last.eval().to(memory_format=torch.channels_last)
        fast = channels_last.decode(channels_last.encode(x.to(memory_format=torch.channels_last)))
        assert torch.allclose(fast, reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = vqgan.decode(vqgan.encode(x))
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).abs().mean() < 0.1
