"""The plugin's dataset: load(root, seed) -> {"x_train", "y_train", "x_test", "y_test"}.

Images as float tensors (N, channels, height, width), labels as integer tensors (N,). lth
holds its validation split out of x_train itself and normalizes as the facts say. `root` is
the spec's dataset.root (where files would be; unused here), `seed` the experiment's.
"""

from __future__ import annotations

import torch

SHAPE = (3, 8, 8)
CLASSES = 4
TRAIN, TEST = 600, 200


def load(root: str | None, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand((CLASSES, *SHAPE), generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=g)
        x = (prototypes[y] + 0.6 * torch.randn((n, *SHAPE), generator=g)).clamp(0.0, 1.0)
        return x, y

    x_train, y_train = draw(TRAIN)
    x_test, y_test = draw(TEST)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
