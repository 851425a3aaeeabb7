"""random_prune: a random mask with the ticket's per-layer counts, the ticket's init
(Frankle & Carbin 2019): is it the structure magnitude pruning found that matters? The mask
is drawn from (experiment seed, level, "random_prune")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.base import Control

if TYPE_CHECKING:
    from lth_core.controls.base import RunContext, StartFactory
    from lth_core.pruning import Mask, StateDict


class RandomPrune(Control):
    # A ticket no better than a random mask of the same per-layer sizes found nothing but
    # those sizes (Frankle et al. 2021).
    ticket_must_beat = True
    description = "random mask with the same per-layer counts, same init"

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        import torch

        from lth_core.pruning import random_mask_like

        generator = torch.Generator().manual_seed(run.seed_for(level, "random_prune"))
        return random_mask_like(ticket_mask, generator)

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        return ticket_start()
