"""Registries of the engine's models and datasets: each entry's facts as plain data.

Torch-free, so the spec (allowed names, paper defaults, input shapes) and the API's limits
(dataset sizes) read them without importing torch; the factories and loaders they name are
imported only when a worker builds a model or loads data. One file per entry under
`models/` and `datasets/`, and one line per entry in that package's registry: adding a model
or a dataset is that file (plus its architecture or loader code if new) and that line.
Controls are registered the same way in lth_core.controls.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


def load(ref: str) -> Any:
    """The object named "package.module:attribute", imported now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Stacking:
    """That a model's runs may train as one stacked model (lth_core.stacked; the stepper is
    chosen by lth_core.steps.stepper_for), and `by_default_on`: the device types where
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
