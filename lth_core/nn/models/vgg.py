"""VGG-19 for CIFAR with batch norm: 16 convs, global average pool, fc 10 (20,024,000 weights)."""

from __future__ import annotations

import torch
from torch import nn

from lth_core.nn.models.base import PrunableModel

# Output widths, "M" for a 2x2 max pool.
_PLAN: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512,
)  # fmt: skip


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class VGG19(PrunableModel):
    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        layers: list[nn.Module] = []
        for step in _PLAN:
            if step == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBN(channels, int(step)))
                channels = int(step)
        self.layers = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.out(self.drop(x))
