"""The dataset registry: one line per entry (each entry's file holds its facts)."""

from __future__ import annotations

from lth_core.registry import DatasetEntry
from lth_core.registry.datasets import cifar10, fashion_mnist, mnist, synthetic

DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (mnist.ENTRY, fashion_mnist.ENTRY, cifar10.ENTRY, synthetic.ENTRY)
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
