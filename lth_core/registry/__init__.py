"""The engine's registries, one mechanism for all: a name maps to "module:attribute", imported
on first use.

Models and datasets: each entry's facts as plain data (one file per entry under `models/` and
`datasets/`). Controls, pruning strategies and diagnostics: a class on a small base (one file
each under lth_core/controls/, lth_core/pruning/strategies/, lth_core/diagnostics/). Adding
any of them is its file and one line in its registry module here. Torch-free, so the spec
(allowed names, paper defaults, input shapes) and the API's limits read them without torch;
what they name is imported only when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def load(ref: str) -> Any:
    """The object named "package.module:attribute", imported now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry(Mapping[str, T], Generic[T]):
    """Names to "module:attribute" references, each imported the first time it is read, so
    listing the names (the spec's allowed values) imports nothing of the entries."""

    def __init__(self, what: str, refs: Mapping[str, str]) -> None:
        self.what, self.refs = what, dict(refs)
        self._loaded: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        if name not in self.refs:
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = load(self.refs[name])
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __contains__(self, name: object) -> bool:
        return name in self.refs

    def names(self) -> tuple[str, ...]:
        return tuple(self.refs)

    def get_entry(self, name: str) -> T:
        """The entry, or a ValueError that names the known ones (for people)."""
        if name not in self.refs:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self.refs)}")
        return self[name]


@dataclass(frozen=True)
class Stacking:
    """That a model's runs may train as one stacked model (lth_core.train.stacked; the stepper is
    chosen by lth_core.train.steps.stepper_for), and `by_default_on`: the device types where
    stacking was measured to pay (bench/speed.py), used by training.stack_runs "auto"."""

    by_default_on: tuple[str, ...]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: str  # "module:Class", called as (input_shape, num_classes, dropout=..., **kwargs)
    paper_defaults: dict[str, Any]  # the spec sections the paper uses for it
    layer_kinds: tuple[str, ...]  # the kinds of its prunable weights (lth_core.spec.LAYER_KINDS)
    stacking: Stacking | None = None  # None: not stackable (batch norm)
    factory_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: str  # "module:function" taking the spec's DatasetSpec, returning RawData
    input_shape: tuple[int, int, int] | None  # (channels, height, width); None: from the spec
    num_classes: int | None  # None: from the spec
    train_size: int | None  # examples before the validation split; None: from the spec
    test_size: int | None
