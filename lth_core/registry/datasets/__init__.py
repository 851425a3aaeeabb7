"""The dataset registry: one line per entry (each entry's file holds its facts), plus the
datasets of installed plugins (`lth.datasets` entry points, lth_core.registry.plugins)."""

from __future__ import annotations

from typing import Any

from lth_core.registry import DatasetEntry, Registry
from lth_core.registry.plugins import DATASETS_GROUP, Plugin, PluginError, facts

#: What a plugin dataset's facts (its `lth.dataset_facts` entry point) may say; all optional.
DATASET_FACTS = {
    "input_shape": "[channels, height, width] of one example",
    "num_classes": "how many classes (default: the largest label + 1)",
    "train_size": "training examples before the validation split",
    "test_size": "test examples",
    "normalization": '{"mean": [...], "std": [...]} per channel (default: none)',
    "description": "one line for listings",
}


def plugin_dataset(plugin: Plugin) -> DatasetEntry:
    """A plugin's dataset as a registry entry: its load callable and its facts, if any."""
    found: dict[str, Any] = facts(plugin, DATASET_FACTS)

    def count(key: str, least: int = 1) -> int | None:
        value = found.get(key)
        if value is not None and (type(value) is not int or value < least):
            raise PluginError(f"{plugin.describe()}: {key} must be a whole number >= {least}")
        return value

    shape = found.get("input_shape")
    if shape is not None and (
        not isinstance(shape, list | tuple)
        or len(shape) != 3
        or not all(type(d) is int and d >= 1 for d in shape)
    ):
        raise PluginError(f"{plugin.describe()}: input_shape must be [channels, height, width]")
    return DatasetEntry(
        name=plugin.name,
        loader=plugin.ref,
        input_shape=(shape[0], shape[1], shape[2]) if shape is not None else None,
        num_classes=count("num_classes", 2),
        train_size=count("train_size"),
        test_size=count("test_size"),
        plugin=plugin,
        normalization=_normalization(plugin, found.get("normalization"), shape),
        description=str(found.get("description", "")),
    )


def _normalization(
    plugin: Plugin, value: Any, shape: Any
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if value is None:
        return None
    try:
        mean, std = list(value["mean"]), list(value["std"])
        ok = set(value) == {"mean", "std"} and len(mean) == len(std) >= 1
        ok = ok and all(type(x) in (int, float) for x in [*mean, *std]) and min(std) > 0
    except (TypeError, KeyError):
        ok = False
    if not ok:
        raise PluginError(
            f"{plugin.describe()}: normalization must be "
            '{"mean": [...], "std": [...]} with one positive std per channel'
        )
    if shape is not None and len(mean) != shape[0]:
        raise PluginError(
            f"{plugin.describe()}: normalization has {len(mean)} channels, input_shape {shape[0]}"
        )
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


DATASETS: Registry[DatasetEntry] = Registry(
    "dataset",
    {
        "mnist": "lth_core.registry.datasets.mnist:ENTRY",
        "fashion_mnist": "lth_core.registry.datasets.fashion_mnist:ENTRY",
        "cifar10": "lth_core.registry.datasets.cifar10:ENTRY",
        "synthetic": "lth_core.registry.datasets.synthetic:ENTRY",
    },
    group=DATASETS_GROUP,
    plugin_entry=plugin_dataset,
)
#: The built-in datasets (plugins: DATASETS.names()).
DATASET_NAMES: tuple[str, ...] = DATASETS.builtin_names()
