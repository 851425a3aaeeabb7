"""Dataset registry: spec.dataset -> Splits of tensors (train, validation held out of train, test)."""

from __future__ import annotations

from collections.abc import Callable

from lth_core.data.base import DatasetUnavailable, RawData, Splits, split_and_normalize
from lth_core.data.cifar import load_cifar10
from lth_core.data.mnist import load_mnist_like
from lth_core.data.synthetic import make_synthetic
from lth_core.spec import DatasetSpec

Loader = Callable[[DatasetSpec], RawData]

REGISTRY: dict[str, Loader] = {
    "mnist": lambda d: load_mnist_like("mnist", d.root),
    "fashion_mnist": lambda d: load_mnist_like("fashion_mnist", d.root),
    "cifar10": lambda d: load_cifar10(d.root),
    "synthetic": lambda d: make_synthetic(d.synthetic),  # type: ignore[arg-type]
}


def load_splits(spec: DatasetSpec) -> Splits:
    if spec.name not in REGISTRY:
        raise DatasetUnavailable(f"unknown dataset {spec.name!r}; known: {', '.join(REGISTRY)}")
    raw = REGISTRY[spec.name](spec)
    return split_and_normalize(raw, spec.validation_size, spec.train_subset)


__all__ = ["REGISTRY", "DatasetUnavailable", "Splits", "load_splits"]
