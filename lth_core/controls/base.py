"""What a control is: how its mask and start weights are made from the ticket's.

A control run trains on the ticket's budget, schedule and batches; only its mask and its
start weights differ, and those are all a control decides. Subclasses import torch inside
their methods, so the registry (and the spec, which lists the names) stays torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.pruning import Mask, StateDict

StartFactory = Callable[[], "dict[str, torch.Tensor]"]
"""The ticket's start weights, computed on demand (controls that re-draw never need them)."""


class RunContext(Protocol):
    """What a control may use of its experiment: one trial's, for one draw."""

    def seed_for(self, *parts: object) -> int:
        """An independent seed for a named use of this trial's (and draw's) seed."""
        ...

    def build(self, seed: int | None) -> nn.Module:
        """A fresh model of the experiment (initialized from `seed`), on the CPU."""
        ...

    @property
    def theta0(self) -> dict[str, torch.Tensor]:
        """The trial's initial weights."""
        ...

    def prunable_weights(self) -> Collection[str]:
        """State-dict names of the weights the masks cover."""
        ...

    def pruned_from(self, level: int) -> tuple[dict[str, torch.Tensor], Mask] | None:
        """The trained weights (theta_final) the level's mask was pruned from and the mask
        they trained under; None where the mask was not pruned (level 0 from a given mask)."""
        ...


class Control(ABC):
    """One control: `mask` and `start` from the ticket's, plus what the rest of the engine
    needs to know of it."""

    description: ClassVar[str]
    trains: ClassVar[bool] = True
    """False: evaluated at its start weights only, never trained (supermask)."""
    repeatable: ClassVar[bool] = True
    """False: one draw per level and trial, whatever control_repeats says (deterministic)."""
    ticket_must_beat: ClassVar[bool] = False
    """Whether a level whose ticket does not beat this control is no winning ticket."""

    @abstractmethod
    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask: ...

    @abstractmethod
    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict: ...
