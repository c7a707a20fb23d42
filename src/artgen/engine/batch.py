"""Several generations of the same size and models stepped together in one batch.

Each member keeps its own prompts, generator, learning rate and optimiser state; only the decoder
and critic passes are batched. Members are independent (the decoder and CLIP treat batch items
separately), so a member's result equals running it alone up to floating-point reordering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from artgen.engine.generate import Generation, StepResult

if TYPE_CHECKING:
    from artgen.models.loading import Models


class BatchGeneration:
    """Steps member Generations in one batched decode and one batched critic pass per critic."""

    def __init__(
        self, models: Models, generations: Sequence[Generation] = (), *, device: torch.device
    ) -> None:
        self.models, self.device = models, torch.device(device)
        self.generations: list[Generation] = []
        for generation in generations:
            self.add(generation)

    def add(self, generation: Generation) -> None:
        """Join a generation; it must share the models, device, EngineOptions and latent size."""
        if generation.models.vqgan is not self.models.vqgan or list(
            generation.models.critics
        ) != list(self.models.critics):
            raise ValueError("a batch member must use the batch's VQGAN and critics")
        if generation.device != self.device:
            raise ValueError(f"batch runs on {self.device}, the generation on {generation.device}")
        if self.generations:
            first = self.generations[0]
            if generation.z.shape != first.z.shape:
                raise ValueError(
                    f"batch members must have one size: {generation.width}x{generation.height} "
                    f"!= {first.width}x{first.height}"
                )
            if generation.options != first.options:
                raise ValueError(
                    "batch members must compute alike (the first member's decode and critic "
                    f"passes serve all): {generation.options} != {first.options}"
                )
        self.generations.append(generation)

    def remove(self, generation: Generation) -> None:
        """Leave the batch (finished or canceled)."""
        self.generations.remove(generation)

    def step(self) -> list[StepResult]:
        """One iteration of every member; results in member order."""
        members = self.generations
        if not members:
            return []
        if len(members) == 1:
            return [members[0].step()]  # alone: exactly the unbatched computation
        for member in members:
            member.optimizer.zero_grad(set_to_none=True)
        # 1. Decode all latents at once.
        images = members[0].synthesize(torch.cat([member.z for member in members]))
        # 2. Each member draws its own cutouts from its own generator.
        cutouts = [member.draw_cutouts(images[i : i + 1]) for i, member in enumerate(members)]
        # 3. One critic pass per critic over every member's cutouts.
        embeddings: list[list[torch.Tensor]] = [[] for _ in members]
        for index in range(len(self.models.critics)):
            batch = [member_cutouts[index] for member_cutouts in cutouts]
            encoded = members[0].embed_cutouts(index, torch.cat(batch))
            for member_embeddings, part in zip(
                embeddings, encoded.split([b.shape[0] for b in batch]), strict=True
            ):
                member_embeddings.append(part)
        # 4. Members are independent, so one backward of the summed losses gives each its gradient.
        losses = [member.loss_from(embeddings[i]) for i, member in enumerate(members)]
        torch.stack(losses).sum().backward()
        return [member.finish_step(loss) for member, loss in zip(members, losses, strict=True)]
