"""First-stage VQGAN of taming-transformers (Esser et al. 2021), with its exact state-dict names.

The module tree mirrors taming's `Encoder`, `Decoder`, `VectorQuantizer2` and `GumbelQuantize`
(those two in quantizers.py) so that `load_state_dict(strict=True)` takes a taming checkpoint's
weights (minus `loss.*`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
import yaml
from torch import Tensor, nn

from artgen.models.quantizers import GumbelQuantizer, VectorQuantizer, snap_to_codebook


@dataclass
class VQGANConfig:
    """The fields of taming's `ddconfig` plus the codebook size; names follow the YAML files."""

    ch: int  # base channel count; level i has ch * ch_mult[i] channels
    out_ch: int  # image channels produced by the decoder
    ch_mult: tuple[int, ...]  # one entry per resolution level; len - 1 downsamplings
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]  # feature-map sizes (relative to `resolution`) with attention
    in_channels: int  # image channels read by the encoder
    resolution: int  # training resolution; only decides where attention blocks sit
    z_channels: int
    n_embed: int  # codebook entries
    embed_dim: int  # codebook vector size
    dropout: float = 0.0
    double_z: bool = False
    gumbel: bool = False  # GumbelVQ (proj + embed) instead of the nearest-neighbour quantizer

    @property
    def factor(self) -> int:
        """Pixels per latent token along each side."""
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_dict(cls, ddconfig: dict[str, Any], n_embed: int, embed_dim: int, *, gumbel: bool):
        """Build from a taming `ddconfig` mapping; unknown keys are ignored, as taming does."""
        required = [f.name for f in fields(cls) if f.name not in {"n_embed", "embed_dim", "gumbel"}]
        optional = {"dropout", "double_z"}
        missing = [name for name in required if name not in ddconfig and name not in optional]
        if missing:
            raise ValueError(f"VQGAN ddconfig is missing {', '.join(missing)}")
        values = {name: ddconfig[name] for name in required if name in ddconfig}
        values["ch_mult"] = tuple(int(m) for m in values["ch_mult"])
        values["attn_resolutions"] = tuple(int(r) for r in values["attn_resolutions"])
        return cls(**values, n_embed=int(n_embed), embed_dim=int(embed_dim), gumbel=gumbel)

    @classmethod
    def from_yaml(cls, text: str) -> VQGANConfig:
        """Parse an official taming YAML: `model.params` or `model.params.first_stage_config`."""
        document = yaml.safe_load(text)
        if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
            raise ValueError("VQGAN config has no `model` section")
        model = document["model"]
        params = model.get("params") or {}
        target = str(model.get("target", ""))
        if "first_stage_config" in params:
            stage = params["first_stage_config"] or {}
            target = str(stage.get("target", ""))
            params = stage.get("params") or {}
        for key in ("ddconfig", "n_embed", "embed_dim"):
            if key not in params:
                raise ValueError(f"VQGAN config has no model.params.{key}")
        return cls.from_dict(
            params["ddconfig"], params["n_embed"], params["embed_dim"], gumbel="Gumbel" in target
        )


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x), taming's `nonlinearity`."""
    return F.silu(x)


def Normalize(channels: int) -> nn.GroupNorm:  # noqa: N802 - taming's name for the norm layer
    """GroupNorm with 32 groups and eps 1e-6, as every taming block uses."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block; a 1x1 `nin_shortcut` when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(self.dropout(swish(self.norm2(h))))  # (B, C_out, H, W)
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)  # (B, C_out, H, W)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions with 1x1 q/k/v projections."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        # (B, 1, HW, C): one head; SDPA scales by C ** -0.5 like taming's explicit softmax.
        q = self.q(normed).reshape(b, 1, c, h * w).transpose(2, 3)
        k = self.k(normed).reshape(b, 1, c, h * w).transpose(2, 3)
        v = self.v(normed).reshape(b, 1, c, h * w).transpose(2, 3)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        out = out.transpose(2, 3).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with taming's asymmetric (right/bottom) zero padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 1, 0, 1))  # (B, C, H+1, W+1)
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x)


class Level(nn.Module):
    """One resolution level (taming's unnamed stage): resnet blocks, each followed by an attention
    block at the attention resolutions, then the resampling to the next level (`downsample` in
    the encoder, `upsample` in the decoder; None at the last level)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.downsample: nn.Module | None = None
        self.upsample: nn.Module | None = None


class Middle(nn.Module):
    """The lowest resolution's resnet, attention, resnet (taming's `mid`)."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)


class Encoder(nn.Module):
    """Image -> z_channels feature map at 1/factor resolution (`encoder.*` keys)."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        levels = len(config.ch_mult)
        in_mult = (1, *config.ch_mult)
        self.conv_in = nn.Conv2d(config.in_channels, config.ch, 3, padding=1)
        self.down = nn.ModuleList()
        resolution = config.resolution
        channels = config.ch
        for level in range(levels):
            stage = Level()
            channels = config.ch * in_mult[level]
            out_channels = config.ch * config.ch_mult[level]
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(channels, out_channels, config.dropout))
                channels = out_channels
                if resolution in config.attn_resolutions:
                    stage.attn.append(AttnBlock(channels))
            if level != levels - 1:
                stage.downsample = Downsample(channels)
                resolution //= 2
            self.down.append(stage)
        self.mid = Middle(channels, config.dropout)
        self.norm_out = Normalize(channels)
        z_out = 2 * config.z_channels if config.double_z else config.z_channels
        self.conv_out = nn.Conv2d(channels, z_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for stage in cast("list[Level]", self.down):
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if stage.downsample is not None:
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))  # (B, C_top, H/f, W/f)
        return self.conv_out(swish(self.norm_out(h)))  # (B, z_channels, H/f, W/f)


class Decoder(nn.Module):
    """z_channels feature map -> image at factor times the resolution (`decoder.*` keys)."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        levels = len(config.ch_mult)
        channels = config.ch * config.ch_mult[-1]
        resolution = config.resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(config.z_channels, channels, 3, padding=1)
        self.mid = Middle(channels, config.dropout)
        stages: list[Level] = []
        for level in reversed(range(levels)):
            stage = Level()
            out_channels = config.ch * config.ch_mult[level]
            for _ in range(config.num_res_blocks + 1):
                stage.block.append(ResnetBlock(channels, out_channels, config.dropout))
                channels = out_channels
                if resolution in config.attn_resolutions:
                    stage.attn.append(AttnBlock(channels))
            if level != 0:
                stage.upsample = Upsample(channels)
                resolution *= 2
            stages.insert(0, stage)
        # Indexed by level (0 = full resolution) as in taming, but run from the top level down.
        self.up = nn.ModuleList(stages)
        self.norm_out = Normalize(channels)
        self.conv_out = nn.Conv2d(channels, config.out_ch, 3, padding=1)

    def forward(self, z: Tensor, recompute: bool = False) -> Tensor:
        """Decode; `recompute`: each block's activations are recomputed in backward, not kept."""
        block = _recomputed if recompute else nn.Module.__call__
        h = self.conv_in(z)  # (B, C_top, h, w)
        h = block(self.mid.block_2, block(self.mid.attn_1, block(self.mid.block_1, h)))
        for stage in reversed(cast("list[Level]", self.up)):
            for i, resnet in enumerate(stage.block):
                h = block(resnet, h)
                if len(stage.attn) > 0:
                    h = block(stage.attn[i], h)
            if stage.upsample is not None:
                h = block(stage.upsample, h)
        return self.conv_out(swish(self.norm_out(h)))  # (B, out_ch, h*f, w*f)


def _recomputed(module: nn.Module, h: Tensor) -> Tensor:
    """module(h), its activations recomputed in backward instead of kept."""
    # No randomness in eval-mode blocks, so the RNG state need not be stashed.
    return torch.utils.checkpoint.checkpoint(
        module, h, use_reentrant=False, preserve_rng_state=False
    )


class VQGAN(nn.Module):
    """Encoder, quantizer and decoder of a taming first-stage model (inference only)."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.gumbel:
            self.quantize: VectorQuantizer | GumbelQuantizer = GumbelQuantizer(
                config.z_channels, config.n_embed, config.embed_dim
            )
        else:
            self.quantize = VectorQuantizer(config.n_embed, config.embed_dim)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    @property
    def factor(self) -> int:
        """Pixels per latent token along each side."""
        return self.config.factor

    @property
    def codebook(self) -> Tensor:
        """(n_embed, embed_dim): the vectors a latent z is snapped to."""
        return self.quantize.codebook

    def encode(self, x: Tensor) -> Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> continuous codebook-space latent (B, D, H/f, W/f)."""
        h = self.quant_conv(self.encoder(x))  # (B, embed_dim, H/f, W/f)
        if isinstance(self.quantize, GumbelQuantizer):
            # Gumbel latents only exist as code choices: map to the arg-max code's vector.
            return self.quantize(h)
        return h

    def decode(self, z_q: Tensor, recompute: bool = False) -> Tensor:
        """Quantised latent (B, D, h, w) -> image (B, out_ch, h*f, w*f) in about [-1, 1];
        `recompute`: recompute the decoder's blocks in backward (see Decoder.forward)."""
        return self.decoder(self.post_quant_conv(z_q), recompute=recompute)

    def snap(self, z: Tensor) -> Tensor:
        """Nearest codebook vectors of z with a straight-through gradient."""
        return snap_to_codebook(z, self.codebook)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct an image: encode, snap to the codebook, decode."""
        return self.decode(self.snap(self.encode(x)))


@torch.no_grad()
def init_random_(model: VQGAN, generator: torch.Generator) -> VQGAN:
    """Fill every parameter from `generator` (deterministic, leaves the global RNG alone)."""
    for name, param in model.named_parameters():
        if name.endswith("embedding.weight") or name.endswith("embed.weight"):
            # Unit-scale codes, so different codes decode to visibly different images.
            param.copy_(torch.randn(param.shape, generator=generator))
        elif param.ndim > 1:
            fan_in = param[0].numel()
            param.copy_(torch.randn(param.shape, generator=generator) * fan_in**-0.5)
        elif ".norm" in name and name.endswith("weight"):
            param.fill_(1.0)
        else:
            param.zero_()
    return model


def random_vqgan(config: VQGANConfig, seed: int = 0, device: torch.device | str = "cpu") -> VQGAN:
    """A VQGAN with random weights drawn from a generator seeded with `seed`."""
    # The default initialisation is overwritten; fork_rng keeps it off the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        model = VQGAN(config)
    init_random_(model, torch.Generator().manual_seed(seed))
    return model.to(device).eval().requires_grad_(False)
