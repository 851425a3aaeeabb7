"""What a control is: how its mask and start weights are made from the ticket's.

A control run trains on the ticket's budget, schedule and batches; only its mask and its
start weights differ, and those are all a control decides. Subclasses import torch inside
their methods, so the registry (and the spec, which lists the names) stays torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.pruning import Mask, StateDict
    from lth_core.spec import ExperimentSpec

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

    def pruned_weights(self) -> Collection[str]:
        """The masked weights the ticket's strategy prunes (a layer at rate 0 is not)."""
        ...

    @property
    def base_mask(self) -> Mask:
        """Level 0's mask (dense, or the given initial mask): what pruning starts from."""
        ...

    @property
    def variant(self) -> str | None:
        """The run's variant (`shuffle` of `snip.shuffle`), None for the plain control."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the experiment trains (and its data lies)."""
        ...

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One example's shape (channels, height, width)."""
        ...

    def training_examples(self, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to `per_class` training examples of each class, drawn by `seed`, on `device`."""
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
    saves_mask: ClassVar[bool] = False
    """True: the mask is the control's own finding (pruning at initialization), kept beside
    the level's (`levels/LLL/masks/<run>.safetensors`) and read back instead of remade."""
    options: ClassVar[dict[str, tuple[str, ...]]] = {}
    """The spec's `control_options` this control takes: option -> its allowed values (each
    option is one of them or a list of them; `ablation` names the run variants)."""

    def refuses(self, spec: ExperimentSpec) -> str | None:
        """Why this control cannot apply to `spec` (one line), or None (the spec is refused)."""
        return None

    def variant_repeatable(self, variant: str | None) -> bool:
        """Whether draws of the run variant differ (a random ablation of a deterministic
        method does); by default `repeatable`."""
        return self.repeatable

    def check_options(self, name: str, given: Any) -> None:
        """Raises a one-line ValueError when `given` (this control's `control_options`
        entry) names an option it does not take or a value it does not allow."""
        if not isinstance(given, dict):
            raise ValueError(f"{name}: must be an object of options, got {given!r:.40}")
        if not self.options:
            raise ValueError(f"{name} takes no options (got {', '.join(map(str, given))})")
        for option, value in given.items():
            allowed = self.options.get(option)
            if allowed is None:
                raise ValueError(
                    f"{name}: unknown option {option!r}; {name} takes "
                    + ", ".join(repr(o) for o in self.options)
                )
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v not in allowed]
            if bad or not values or len(set(map(str, values))) != len(values):
                raise ValueError(
                    f"{name}.{option}: {value!r:.60} is not allowed; one of "
                    + ", ".join(repr(a) for a in allowed)
                    + " (or a list of them, each once)"
                )

    @abstractmethod
    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask: ...

    @abstractmethod
    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict: ...
