"""A generated classification problem: one random prototype per class plus Gaussian noise.

Learnable but not trivial at the default noise, any input shape, and identical for every
experiment seed (the dataset seed is fixed), so tests can check that training learns.
"""

from __future__ import annotations

import torch

from lth_core.nn.data.base import RawData
from lth_core.spec import DatasetSpec, SyntheticSpec

_DATA_SEED = 1234
_PROTOTYPE_SCALE = 0.1
_NOISE_SCALE = 0.7


def load_synthetic(spec: DatasetSpec) -> RawData:
    assert spec.synthetic is not None  # the spec fills it in for name "synthetic"
    return make_synthetic(spec.synthetic)


def make_synthetic(cfg: SyntheticSpec) -> RawData:
    g = torch.Generator().manual_seed(_DATA_SEED)
    shape = tuple(cfg.input_shape)
    prototypes = torch.randn((cfg.num_classes, *shape), generator=g) * _PROTOTYPE_SCALE

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, cfg.num_classes, (n,), generator=g)
        x = prototypes[y] + cfg.noise * _NOISE_SCALE * torch.randn((n, *shape), generator=g)
        return x, y

    train_x, train_y = draw(cfg.train_size)
    test_x, test_y = draw(cfg.test_size)
    channels = shape[0]
    return RawData(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=cfg.num_classes,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
    )
