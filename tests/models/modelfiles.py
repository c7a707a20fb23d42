"""Writers for checkpoints and configs in the real taming / pytorch-lightning 1.x formats."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from artgen.models.vqgan import VQGAN, VQGANConfig

LIGHTNING_MODULE = "pytorch_lightning.callbacks.model_checkpoint"

SMALL_DDCONFIG = {
    "double_z": False,
    "z_channels": 32,
    "resolution": 32,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [16],
    "dropout": 0.0,
}


def small_config(gumbel: bool = False, n_embed: int = 64) -> VQGANConfig:
    """A two-level VQGAN (factor 2) that builds and saves in milliseconds."""
    return VQGANConfig.from_dict(SMALL_DDCONFIG, n_embed, 32, gumbel=gumbel)


def official_yaml(config: VQGANConfig, *, net2net: bool = False) -> str:
    """The YAML layout of taming's released configs (VQModel / GumbelVQ / Net2NetTransformer)."""
    ddconfig = {
        "double_z": config.double_z,
        "z_channels": config.z_channels,
        "resolution": config.resolution,
        "in_channels": config.in_channels,
        "out_ch": config.out_ch,
        "ch": config.ch,
        "ch_mult": list(config.ch_mult),
        "num_res_blocks": config.num_res_blocks,
        "attn_resolutions": list(config.attn_resolutions),
        "dropout": config.dropout,
    }
    target = "taming.models.vqgan.GumbelVQ" if config.gumbel else "taming.models.vqgan.VQModel"
    stage: dict = {
        "target": target,
        "params": {
            "embed_dim": config.embed_dim,
            "n_embed": config.n_embed,
            "monitor": "val/rec_loss",
            "ddconfig": ddconfig,
            "lossconfig": {
                "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 0},
            },
        },
    }
    if config.gumbel:
        stage["params"]["kl_weight"] = 1.0e-08
        stage["params"]["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9},
        }
    if net2net:
        model = {
            "base_learning_rate": 4.5e-06,
            "target": "taming.models.cond_transformer.Net2NetTransformer",
            "params": {
                "cond_stage_key": "segmentation",
                "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT"},
                "first_stage_config": stage,
                "cond_stage_config": {"target": "taming.models.vqgan.VQModel", "params": {}},
            },
        }
    else:
        model = {"base_learning_rate": 4.5e-06, **stage}
    document = {"model": model, "data": {"target": "main.DataModuleFromConfig"}}
    return yaml.safe_dump(document, sort_keys=False)


def fake_lightning_class(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class that pickles as pytorch_lightning's ModelCheckpoint (module faked in sys.modules)."""
    module = types.ModuleType(LIGHTNING_MODULE)

    class ModelCheckpoint:
        def __init__(self) -> None:
            self.monitor = "val/rec_loss"
            self.save_top_k = 1

    ModelCheckpoint.__module__ = LIGHTNING_MODULE
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, LIGHTNING_MODULE, module)
    return ModelCheckpoint


def write_lightning_checkpoint(
    path: Path,
    model: VQGAN,
    checkpoint_class: type,
    *,
    prefix: str = "",
    legacy_format: bool = False,
) -> None:
    """A `.ckpt` as pytorch-lightning 1.x saved taming models: callbacks keyed by the class."""
    state = {prefix + key: value.clone() for key, value in model.state_dict().items()}
    state[prefix + "loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
    state[prefix + "loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    if prefix:
        state["transformer.tok_emb.weight"] = torch.zeros(8, 4)
        state["cond_stage_model.quantize.embedding.weight"] = torch.zeros(8, 4)
    checkpoint = {
        "epoch": 7,
        "global_step": 1234,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": state,
        "callbacks": {
            checkpoint_class: {
                "monitor": "val/rec_loss",
                "best_model_score": np.float64(0.25),
                "best_model_path": "/logs/checkpoints/last.ckpt",
                "instance": checkpoint_class(),
            }
        },
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "params": [0]}]}],
        "lr_schedulers": [],
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy_format)
