"""Loading a registered dataset as Splits of tensors (train, validation held out of train, test).

Each dataset's facts and loader are in lth_core.registry.datasets; a plugin's dataset loads
through lth_core.nn.data.plugin.
"""

from __future__ import annotations

from lth_core.nn.data.base import DatasetUnavailable, RawData, Splits, split_and_normalize
from lth_core.registry import load
from lth_core.registry.datasets import DATASETS
from lth_core.spec import DatasetSpec


def load_splits(spec: DatasetSpec, seed: int = 0) -> Splits:
    """`seed`: the experiment's, handed to a plugin's load (the built-ins do not use it)."""
    if spec.name not in DATASETS:
        raise DatasetUnavailable(f"unknown dataset {spec.name!r}; known: {', '.join(DATASETS)}")
    entry = DATASETS[spec.name]
    if entry.plugin is not None:
        from lth_core.nn.data.plugin import load_plugin_data

        raw: RawData = load_plugin_data(entry, spec.root, seed)
    else:
        raw = load(entry.loader)(spec)
    return split_and_normalize(raw, spec.validation_size, spec.train_subset)


__all__ = ["DatasetUnavailable", "Splits", "load_splits"]
