"""Control registry: how each control run's mask and start weights are made, one file each.

Torch-free to import (the spec takes its allowed names from here); each entry module imports
torch only inside its functions. An entry module defines

    DESCRIPTION: str
    def mask(run: RunContext, level: int, ticket_mask: Mask) -> Mask
    def start(run: RunContext, level: int, ticket_start: Callable[[], StateDict]) -> StateDict

where `ticket_mask` and `ticket_start()` are what the level's ticket run trains from; the
control trains on the ticket's budget, schedule and batches. Adding a control is adding a file
here and a line to CONTROLS.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

TICKET = "ticket"
"""The run kind that is not a control: the level's pruned network from its reset weights."""

CONTROLS: dict[str, str] = {
    "random_reinit": "lth_core.controls.random_reinit",
    "random_prune": "lth_core.controls.random_prune",
    "sign_preserving_reinit": "lth_core.controls.sign_preserving_reinit",
}
CONTROL_NAMES: tuple[str, ...] = tuple(CONTROLS)


class RunContext(Protocol):
    """What a control may use of its experiment."""

    def seed_for(self, *parts: object) -> int:
        """An independent seed for a named use of the experiment's seed."""
        ...

    def build(self, seed: int | None) -> nn.Module:
        """A fresh model of the experiment (initialized from `seed`), on the CPU."""
        ...

    @property
    def theta0(self) -> dict[str, torch.Tensor]:
        """The experiment's initial weights."""
        ...

    def prunable_weights(self) -> Collection[str]:
        """State-dict names of the weights the masks cover."""
        ...


def control(name: str) -> ModuleType:
    """The entry module of a control (imported on first use)."""
    if name not in CONTROLS:
        raise ValueError(f"unknown control {name!r}; known: {', '.join(CONTROLS)}")
    return importlib.import_module(CONTROLS[name])


StartFactory = Callable[[], "dict[str, torch.Tensor]"]
