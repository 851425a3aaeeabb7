"""random_reinit: the ticket's mask from a fresh random init (Frankle & Carbin 2019, section 2).

If the ticket's initial values matter, the same sparse structure re-drawn at random learns
slower and worse. The fresh init is seeded by (experiment seed, level, "random_reinit").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.base import Control

if TYPE_CHECKING:
    from lth_core.controls.base import RunContext, StartFactory
    from lth_core.pruning import Mask, StateDict


class RandomReinit(Control):
    # A ticket no better than its structure re-drawn at random is not a winning ticket
    # (the paper's VGG/ResNet at lr 0.1): the init made no difference.
    ticket_must_beat = True
    description = "same mask, fresh random init"

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        return ticket_mask

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        return run.build(seed=run.seed_for(level, "random_reinit")).state_dict()
