"""The plugin's networks: plain torch modules, built as build(input_shape, num_classes).

lth prunes every nn.Conv2d weight (kind `conv`) and nn.Linear weight (`fc`, the last one
`output`); biases are never pruned. The module's own initialization is used, drawn from the
experiment's seed.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 8, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, kernel_size=3, padding=1)
        self.fc = nn.Linear(8 * (height // 2) * (width // 2), 32)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        x = nn.functional.max_pool2d(x, 2).flatten(1)
        return self.head(torch.relu(self.fc(x)))


def build_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return TinyCNN(input_shape, num_classes)


def build_mlp(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels * height * width, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
