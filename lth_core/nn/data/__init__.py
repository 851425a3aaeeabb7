"""Loading a registered dataset as Splits of tensors (train, validation held out of train, test).

Each dataset's facts and loader are in lth_core.registry.datasets.
"""

from __future__ import annotations

from lth_core.nn.data.base import DatasetUnavailable, RawData, Splits, split_and_normalize
from lth_core.registry import load
from lth_core.registry.datasets import DATASETS
from lth_core.spec import DatasetSpec


def load_splits(spec: DatasetSpec) -> Splits:
    if spec.name not in DATASETS:
        raise DatasetUnavailable(f"unknown dataset {spec.name!r}; known: {', '.join(DATASETS)}")
    raw: RawData = load(DATASETS[spec.name].loader)(spec)
    return split_and_normalize(raw, spec.validation_size, spec.train_subset)


__all__ = ["DatasetUnavailable", "Splits", "load_splits"]
