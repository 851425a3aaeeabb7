"""Plugins: models, datasets, controls and pruning strategies from installed packages.

A package declares Python entry points (the mechanism of pytest and Celery plugins)::

    [project.entry-points."lth.models"]        name = "pkg.module:build"
    [project.entry-points."lth.datasets"]      name = "pkg.module:load"
    [project.entry-points."lth.controls"]      name = "pkg.module:ControlClass"
    [project.entry-points."lth.strategies"]    name = "pkg.module:StrategyClass"
    [project.entry-points."lth.model_facts"]   name = "pkg.facts:MODEL_FACTS"   (optional)
    [project.entry-points."lth.dataset_facts"] name = "pkg.facts:DATASET_FACTS" (optional)

Listing them reads the installed packages' metadata only: nothing of a plugin is imported to
know its names, package and version. Its facts (a plain dict in a torch-free module) are
imported when an entry is first read; its torch code only by the engine, when it builds the
model or loads the data. The API accepts names, never import paths: a plugin runs only
because an operator installed it. Torch-free.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MODELS_GROUP = "lth.models"
DATASETS_GROUP = "lth.datasets"
CONTROLS_GROUP = "lth.controls"
STRATEGIES_GROUP = "lth.strategies"
FACTS_GROUPS = {MODELS_GROUP: "lth.model_facts", DATASETS_GROUP: "lth.dataset_facts"}


class PluginError(ValueError):
    """An installed plugin that does not keep the contract (its facts, its callables); the
    message names the plugin and its package."""


class PluginMissing(RuntimeError):
    """A spec names a plugin this environment does not have; the message names the package."""


@dataclass(frozen=True)
class Plugin:
    """One entry point: its registry group, name, "module:attribute" and distribution."""

    group: str
    name: str
    ref: str
    package: str | None
    version: str | None

    @property
    def requirement(self) -> str:
        """``package==version`` (what an operator installs)."""
        if self.package is None:
            return f"an unnamed package ({self.ref})"
        return f"{self.package}=={self.version}" if self.version else self.package

    def describe(self) -> str:
        return f"{self.name!r} of the plugin package {self.requirement}"

    def load(self) -> Any:
        """The entry point's object, imported now (a PluginError if it cannot be)."""
        return _import(self.ref, self)


def installed(group: str) -> dict[str, Plugin]:
    """The plugins of a group installed where Python looks now (sys.path), by name; nothing
    imported. A name declared twice keeps the first package's entry."""
    return dict(_installed(group, tuple(sys.path)))


@lru_cache(maxsize=64)
def _installed(group: str, _path: tuple[str, ...]) -> tuple[tuple[str, Plugin], ...]:
    importlib.invalidate_caches()
    found: dict[str, Plugin] = {}
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist
        package = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        found.setdefault(ep.name, Plugin(group, ep.name, ep.value, package, version))
    return tuple(sorted(found.items()))


def facts(plugin: Plugin, allowed: Mapping[str, str]) -> dict[str, Any]:
    """The plugin's facts (the `lth.model_facts` / `lth.dataset_facts` entry of the same name):
    a dict with keys from `allowed` (key -> what it is, for the message); {} without one."""
    group = FACTS_GROUPS.get(plugin.group)
    entry = installed(group).get(plugin.name) if group else None
    if entry is None:
        return {}
    found = _import(entry.ref, plugin)
    if not isinstance(found, Mapping):
        raise PluginError(
            f"{plugin.describe()}: its facts {entry.ref} must be a dict, not {type(found).__name__}"
        )
    unknown = sorted(set(found) - set(allowed))
    if unknown:
        raise PluginError(
            f"{plugin.describe()}: unknown facts {', '.join(map(repr, unknown))}; allowed: "
            + "; ".join(f"{k} ({what})" for k, what in allowed.items())
        )
    return dict(found)


def _import(ref: str, plugin: Plugin) -> Any:
    module, _, attribute = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except Exception as exc:  # the plugin's own code: any failure is its package's
        raise PluginError(
            f"{plugin.describe()} cannot be loaded ({ref}): {type(exc).__name__}: {exc}"
        ) from exc


__all__ = [
    "CONTROLS_GROUP",
    "DATASETS_GROUP",
    "MODELS_GROUP",
    "STRATEGIES_GROUP",
    "Plugin",
    "PluginError",
    "PluginMissing",
    "facts",
    "installed",
]
