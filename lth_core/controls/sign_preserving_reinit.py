"""sign_preserving_reinit: the ticket's mask, fresh random magnitudes with theta_0's signs.

Zhou et al. 2019 ("Deconstructing Lottery Tickets") found that what a ticket keeps of its
init is mostly each weight's sign: re-drawn magnitudes with the original signs train nearly
as well as the ticket, where random_reinit does not. Every prunable weight gets the magnitude
of a fresh init (seeded by (experiment seed, level, "sign_preserving_reinit")) and the sign of
its value in theta_0; other tensors (biases, batch norm) come from the fresh init.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.base import Control

if TYPE_CHECKING:
    from lth_core.controls.base import RunContext, StartFactory
    from lth_core.pruning import Mask, StateDict


class SignPreservingReinit(Control):
    # Zhou et al. find it trains nearly as well as the ticket: a diagnostic of what the init
    # keeps, not a bar a ticket must clear.
    ticket_must_beat = False
    description = "same mask, fresh random magnitudes keeping theta_0's signs"

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        return ticket_mask

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        import torch

        fresh = run.build(seed=run.seed_for(level, "sign_preserving_reinit")).state_dict()
        theta0 = run.theta0
        prunable = run.prunable_weights()
        return {
            name: torch.where(theta0[name] < 0, -value.abs(), value.abs())
            if name in prunable
            else value
            for name, value in fresh.items()
        }
