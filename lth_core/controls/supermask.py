"""supermask: the ticket's mask applied to theta_0, evaluated with no training at all.

Zhou et al. 2019 ("Deconstructing Lottery Tickets") found that the mask of a ticket, applied
to the untrained initial weights, scores far above chance (86% on MNIST): the mask alone
carries information. This run is evaluated once at its start weights on validation and test;
it takes no optimizer step, so its early-stop iteration is its start iteration and its
"training" costs one evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.base import Control

if TYPE_CHECKING:
    from lth_core.controls.base import RunContext, StartFactory
    from lth_core.pruning import Mask, StateDict


class Supermask(Control):
    trains = False
    # Deterministic (the mask on theta_0): a second draw would be the same run.
    repeatable = False
    # Untrained: any trained ticket beats it; it measures the mask, not a bar to clear.
    ticket_must_beat = False
    description = "same mask on theta_0, no training (evaluated as is)"

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        return ticket_mask

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        return run.theta0
