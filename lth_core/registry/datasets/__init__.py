"""The dataset registry: one line per entry (each entry's file holds its facts)."""

from __future__ import annotations

from lth_core.registry import DatasetEntry, Registry

DATASETS: Registry[DatasetEntry] = Registry(
    "dataset",
    {
        "mnist": "lth_core.registry.datasets.mnist:ENTRY",
        "fashion_mnist": "lth_core.registry.datasets.fashion_mnist:ENTRY",
        "cifar10": "lth_core.registry.datasets.cifar10:ENTRY",
        "synthetic": "lth_core.registry.datasets.synthetic:ENTRY",
    },
)
DATASET_NAMES: tuple[str, ...] = DATASETS.names()
