"""Every registry's entries with where each comes from and the facts it has: what
`GET /registry` answers and `lth registry` prints. Torch-free: a plugin's facts module is
read, its torch code never (controls and strategies are listed by name and origin only).
"""

from __future__ import annotations

from typing import Any

from lth_core.registry import DatasetEntry, ModelEntry, Registry
from lth_core.registry.controls import CONTROLS
from lth_core.registry.datasets import DATASETS
from lth_core.registry.models import MODELS
from lth_core.registry.plugins import PluginError
from lth_core.registry.strategies import STRATEGIES


def _model_facts(entry: ModelEntry) -> dict[str, Any]:
    facts: dict[str, Any] = {"layer_kinds": list(entry.layer_kinds)} if entry.layer_kinds else {}
    if entry.paper_defaults:
        facts["paper_defaults"] = entry.paper_defaults
    if entry.plugin is None:
        facts["stackable"] = entry.stacking is not None
    return facts


def _dataset_facts(entry: DatasetEntry) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "input_shape": list(entry.input_shape) if entry.input_shape else None,
        "num_classes": entry.num_classes,
        "train_size": entry.train_size,
        "test_size": entry.test_size,
    }
    if entry.normalization is not None:
        facts["normalization"] = {
            "mean": list(entry.normalization[0]),
            "std": list(entry.normalization[1]),
        }
    return {k: v for k, v in facts.items() if v is not None}


def _items(registry: Registry[Any], facts_of: Any = None) -> list[dict[str, Any]]:
    out = []
    for name in registry.names():
        plugin = registry.origin(name)
        item: dict[str, Any] = {
            "name": name,
            "source": "built-in" if plugin is None else "plugin",
            "package": plugin.package if plugin else None,
            "version": plugin.version if plugin else None,
            "description": "",
            "facts": {},
            "problem": None,
        }
        if facts_of is not None:
            try:
                entry = registry[name]
            except PluginError as exc:
                item["problem"] = str(exc)
            else:
                item["facts"] = facts_of(entry)
                item["description"] = entry.description
        out.append(item)
    return out


def describe() -> dict[str, list[dict[str, Any]]]:
    """{"models": [...], "datasets": [...], "controls": [...], "strategies": [...]}: each item
    `name`, `source` ("built-in" or "plugin"), `package`, `version`, `description`, `facts`,
    and `problem` (a plugin whose facts break the contract: why)."""
    return {
        "models": _items(MODELS, _model_facts),
        "datasets": _items(DATASETS, _dataset_facts),
        "controls": _items(CONTROLS),
        "strategies": _items(STRATEGIES),
    }
