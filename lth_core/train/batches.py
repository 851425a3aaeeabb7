"""Which examples every iteration trains on, for one run or K stacked members.

Each epoch is a fresh permutation seeded by (seed, epoch), cut into full batches (the
remainder is dropped so every step has the same shape); a run that starts at iteration k
(rewinding) sees exactly the batches the dense run saw from k on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lth_core.nn.data.augment import flip_and_crop
from lth_core.nn.data.base import Splits


class BatchOrder:
    """The batch indices of every iteration, a pure function of (seed, iteration)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.per_epoch = n // batch_size
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, iteration: int) -> torch.Tensor:
        epoch, step = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed + epoch * 1_000_003) % 2**63)
            self._perm = torch.randperm(self.n, generator=g).to(self.device)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[step * self.batch_size : (step + 1) * self.batch_size]


class Batches:
    """The batch of each iteration for K members.

    Members sharing a data seed (every run of one level does) share each batch: x is
    (B, ...) and y, repeated per member, (K * B,). Members with different seeds each get
    their own: x is (K, B, ...), y (K * B,). A shared batch is gathered into the same two
    tensors every step: a fresh LeNet batch (188 KB, above glibc's default mmap threshold)
    can cost an mmap and page faults every step. Augmentation (one run only) flips and crops
    the batch with the run's own generator.
    """

    def __init__(
        self,
        splits: Splits,
        batch_size: int,
        data_seeds: Sequence[int],
        augment_seed: int | None = None,
    ) -> None:
        device = splits.train_x.device
        self.k = len(data_seeds)
        self.shared = len(set(data_seeds)) == 1
        if augment_seed is not None and self.k > 1:
            raise ValueError("augmentation is for one run at a time")
        n = splits.train_x.shape[0]
        seeds = data_seeds[:1] if self.shared else data_seeds
        self.orders = [BatchOrder(n, batch_size, s, device) for s in seeds]
        self.batch_size = batch_size
        self.splits = splits
        self.train_x, self.train_y = splits.train_x, splits.train_y
        self.batch_x = self.train_x.new_empty((batch_size, *self.train_x.shape[1:]))
        self.batch_y = self.train_y.new_empty((batch_size,))
        self.generator = (
            torch.Generator(device=device).manual_seed(augment_seed)
            if augment_seed is not None
            else None
        )

    def __call__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.shared:
            idx = torch.cat([o.indices(iteration) for o in self.orders])
            x = self.train_x.index_select(0, idx).unflatten(0, (self.k, self.batch_size))
            return x, self.train_y.index_select(0, idx)
        idx = self.orders[0].indices(iteration)
        x = torch.index_select(self.train_x, 0, idx, out=self.batch_x)
        y = torch.index_select(self.train_y, 0, idx, out=self.batch_y)
        if self.generator is not None:
            x = flip_and_crop(x, self.generator, self.splits.pad_value)
        return x, (y if self.k == 1 else y.repeat(self.k))
