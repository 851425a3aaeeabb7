"""CIFAR-10 through torchvision (downloaded once into the datasets folder, or found in dataset.root)."""

from __future__ import annotations

from pathlib import Path

import torch

from lth_core.nn.data.base import DatasetUnavailable, RawData
from lth_core.nn.data.mnist import default_root
from lth_core.spec import DatasetSpec

_MEAN = (0.4914, 0.4822, 0.4465)
_STD = (0.2470, 0.2435, 0.2616)


def load_cifar10_spec(spec: DatasetSpec) -> RawData:
    return load_cifar10(spec.root)


def load_cifar10(root: str | None, download: bool = True) -> RawData:
    import torchvision

    base = Path(root) if root else default_root()
    try:
        train = torchvision.datasets.CIFAR10(str(base), train=True, download=download)
        test = torchvision.datasets.CIFAR10(str(base), train=False, download=download)
    except Exception as exc:
        raise DatasetUnavailable(
            f"dataset 'cifar10' not found in {base} and could not be downloaded ({exc}). Put "
            "torchvision's cifar-10-batches-py folder there, set dataset.root or "
            "LTH_DATASETS_DIR, or run where torchvision can download it."
        ) from exc

    def images(ds) -> torch.Tensor:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)

    return RawData(
        train_x=images(train),
        train_y=torch.tensor(train.targets, dtype=torch.int64),
        test_x=images(test),
        test_y=torch.tensor(test.targets, dtype=torch.int64),
        num_classes=10,
        mean=_MEAN,
        std=_STD,
    )
