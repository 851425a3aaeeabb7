"""A dataset held as tensors on the training device.

Every dataset fits in memory (the largest, CIFAR-10, is 600 MB as float32), so the training
loop draws batches by indexing tensors instead of going through a DataLoader: no per-sample
Python, no worker processes, no host-to-device copies per step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


class DatasetUnavailable(RuntimeError):
    """The files are not here and cannot be downloaded; the message says how to get them."""


@dataclass(frozen=True)
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    # Value a zero-intensity pixel has after normalization, per channel (for padding crops).
    pad_value: tuple[float, ...] = (0.0,)
    # The per-channel normalization applied to the images ((x - mean) / std): a ticket used
    # outside lth needs its inputs normalized the same way (lth_core.tickets).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    def to(self, device: torch.device | str) -> Splits:
        move = {
            name: getattr(self, name).to(device)
            for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        }
        return replace(self, **move)


@dataclass(frozen=True)
class RawData:
    """Images as float in [0, 1] (N, C, H, W) and int64 labels, before splitting and normalizing."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# The validation split is the same for every experiment on a dataset, whatever its seed, so
# that early-stopping iterations of different seeds are measured on the same examples.
_SPLIT_SEED = 20190506


def split_and_normalize(raw: RawData, validation_size: int, train_subset: int | None) -> Splits:
    n = raw.train_x.shape[0]
    if validation_size >= n:
        raise ValueError(f"validation_size {validation_size} leaves no training data (of {n})")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_SPLIT_SEED))
    val_idx, train_idx = order[:validation_size], order[validation_size:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    mean = torch.tensor(raw.mean).view(1, -1, 1, 1)
    std = torch.tensor(raw.std).view(1, -1, 1, 1)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return ((x - mean) / std).contiguous()

    return Splits(
        train_x=norm(raw.train_x[train_idx]),
        train_y=raw.train_y[train_idx].contiguous(),
        val_x=norm(raw.train_x[val_idx]),
        val_y=raw.train_y[val_idx].contiguous(),
        test_x=norm(raw.test_x),
        test_y=raw.test_y.contiguous(),
        num_classes=raw.num_classes,
        pad_value=tuple((-m / s) for m, s in zip(raw.mean, raw.std, strict=True)),
        mean=tuple(raw.mean),
        std=tuple(raw.std),
    )
