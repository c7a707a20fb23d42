"""EngineOptions: the fast-path switches of a Generation (how it computes, never what).

None means "decide from the device and size": the fast path and its CUDA-only parts (bf16,
channels_last, the fused optimiser) on CUDA, the plain fp32 reference path elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

# Above this many output pixels the fast path recomputes decoder blocks in backward to save memory.
RECOMPUTE_PIXELS = 512 * 512


@dataclass(frozen=True)
class EngineOptions:
    """How a Generation computes; `resolved` turns every None into the choice for a device."""

    fast: bool | None = None  # batched cutouts (FastCutouts) instead of the seed's reference loop
    compile: bool | str = False  # torch.compile (True, or a mode name), eager fallback on failure
    recompute_decoder: bool | None = None  # recompute decoder blocks in backward (saves memory)
    bf16: bool | None = None  # bf16 autocast of decoder and critics; False keeps fast fp32
    channels_last: bool | None = None  # channels_last activations (what CUDA convolutions like)
    fused_optimizer: bool | None = None  # one kernel for the Adam/AdamW update

    def resolved(self, device: torch.device, pixels: int) -> EngineOptions:
        """These options with each None decided for `device` and `pixels` output pixels.

        bf16, channels_last and the fused optimiser pay off and are well supported on CUDA only;
        they are fast-path options: asking for one on the reference path is refused.
        """
        fast = device.type == "cuda" if self.fast is None else self.fast
        for name in ("bf16", "channels_last", "fused_optimizer"):
            if getattr(self, name) and not fast:
                raise ValueError(f"{name} is a fast-path option; the reference path is plain fp32")
        fast_cuda = fast and device.type == "cuda"
        recompute_decoder = self.recompute_decoder
        if recompute_decoder is None:
            recompute_decoder = fast and pixels > RECOMPUTE_PIXELS
        return replace(
            self,
            fast=fast,
            recompute_decoder=recompute_decoder,
            bf16=fast_cuda if self.bf16 is None else self.bf16,
            channels_last=fast_cuda if self.channels_last is None else self.channels_last,
            fused_optimizer=fast_cuda if self.fused_optimizer is None else self.fused_optimizer,
        )
