"""Control registry: how each control run's mask and start weights are made, one file each.

Torch-free to import (the spec takes its allowed names from here); each entry module imports
torch only inside its functions. An entry module defines

    DESCRIPTION: str
    def mask(run: RunContext, level: int, ticket_mask: Mask) -> Mask
    def start(run: RunContext, level: int, ticket_start: Callable[[], StateDict]) -> StateDict
    REPEATABLE: bool      # False: one draw per level and trial whatever control_repeats says
    TRAINS: bool          # False: the run is evaluated at its start, never trained (supermask)
    TICKET_MUST_BEAT: bool  # whether a level whose ticket does not beat it is no winning ticket

where `ticket_mask` and `ticket_start()` are what the level's ticket run trains from; the
control trains on the ticket's budget, schedule and batches. Adding a control is adding a file
here and a line to CONTROLS.
"""

from __future__ import annotations

import importlib
import re
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
    "supermask": "lth_core.controls.supermask",
}
CONTROL_NAMES: tuple[str, ...] = tuple(CONTROLS)

_RUN_ID = re.compile(
    r"^(?P<kind>[a-z_]+)(?:\.t(?P<trial>[1-9][0-9]*))?(?:\.r(?P<repeat>[1-9][0-9]*))?$"
)


def run_id(kind: str, trial: int = 0, repeat: int = 0) -> str:
    """The name of one run of a level: `kind` for trial 0's first draw (what an experiment
    without trials has always called it), `kind.t<trial>` and `.r<repeat>` otherwise. It
    names the run's metrics file, its claim and its progress."""
    return kind + (f".t{trial}" if trial else "") + (f".r{repeat}" if repeat else "")


def draws(name: str, repeats: int) -> int:
    """How many draws of control `name` a level makes when `repeats` are asked for."""
    return repeats if getattr(control(name), "REPEATABLE", True) else 1


def parse_run_id(name: str) -> tuple[str, int, int]:
    """(kind, trial, repeat) of a run id; raises ValueError naming the expected form."""
    found = _RUN_ID.match(name)
    if found is None:
        raise ValueError(f"run {name!r} is not of the form kind[.t<trial>][.r<repeat>]")
    return found["kind"], int(found["trial"] or 0), int(found["repeat"] or 0)


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
