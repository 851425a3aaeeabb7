"""The engine's registries, one mechanism for all: a name maps to "module:attribute", imported
on first use.

Models and datasets: each entry's facts as plain data (one file per entry under `models/` and
`datasets/`). Controls, pruning strategies and diagnostics: a class on a small base (one file
each under lth_core/controls/, lth_core/pruning/strategies/, lth_core/diagnostics/). Adding
any of them is its file and one line in its registry module here. Torch-free, so the spec
(allowed names, paper defaults, input shapes) and the API's limits read them without torch;
what they name is imported only when it is used.

A registry with an entry-point `group` also holds the plugins installed under it
(lth_core.registry.plugins): their names are known from the packages' metadata, and an entry
is made from the plugin when it is first read (`plugin_entry`; by default the object the entry
point names). A built-in name wins over a plugin's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lth_core.registry.plugins import Plugin, installed

T = TypeVar("T")


def load(ref: str) -> Any:
    """The object named "package.module:attribute", imported now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry(Mapping[str, T], Generic[T]):
    """Names to "module:attribute" references, each imported the first time it is read, so
    listing the names (the spec's allowed values) imports nothing of the entries; with a
    `group`, the plugins installed under it too."""

    def __init__(
        self,
        what: str,
        refs: Mapping[str, str],
        *,
        group: str | None = None,
        plugin_entry: Callable[[Plugin], T] | None = None,
    ) -> None:
        self.what, self.refs, self.group = what, dict(refs), group
        self._plugin_entry = plugin_entry
        self._loaded: dict[tuple[str, str], T] = {}

    def plugins(self) -> dict[str, Plugin]:
        """The installed plugins of this registry by name (no import; built-ins win)."""
        if self.group is None:
            return {}
        return {n: p for n, p in installed(self.group).items() if n not in self.refs}

    def origin(self, name: str) -> Plugin | None:
        """The plugin an entry comes from; None for a built-in (or an unknown name)."""
        return None if name in self.refs else self.plugins().get(name)

    def __getitem__(self, name: str) -> T:
        plugin = self.origin(name)
        ref = self.refs.get(name) if plugin is None else plugin.ref
        if ref is None:
            raise KeyError(name)
        key = (name, ref)
        if key not in self._loaded:
            if plugin is None:
                self._loaded[key] = load(ref)
            elif self._plugin_entry is not None:
                self._loaded[key] = self._plugin_entry(plugin)
            else:
                self._loaded[key] = plugin.load()
        return self._loaded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.refs or name in self.plugins())

    def names(self) -> tuple[str, ...]:
        """The built-in names, then the installed plugins'."""
        return (*self.refs, *self.plugins())

    def builtin_names(self) -> tuple[str, ...]:
        return tuple(self.refs)

    def get_entry(self, name: str) -> T:
        """The entry, or a ValueError that names the known ones (for people)."""
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
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
    # A plugin's model: `factory` is its build(input_shape, num_classes) (lth_core.nn.models)
    plugin: Plugin | None = None
    description: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: str  # "module:function" taking the spec's DatasetSpec, returning RawData
    input_shape: tuple[int, int, int] | None  # (channels, height, width); None: from the spec
    num_classes: int | None  # None: from the spec
    train_size: int | None  # examples before the validation split; None: from the spec
    test_size: int | None
    # A plugin's dataset: `loader` is its load(root, seed) (lth_core.nn.data.plugin); None
    # sizes and shape: unknown until loaded. normalization: (mean, std) per channel, or None
    # for the data as the plugin gives it.
    plugin: Plugin | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    description: str = ""
