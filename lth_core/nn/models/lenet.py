"""LeNet-300-100: the paper's fully connected MNIST network (266,200 weights on 28x28 inputs)."""

from __future__ import annotations

import math

import torch
from torch import nn

from lth_core.nn.models.base import PrunableModel


class LeNet300100(PrunableModel):
    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.out = nn.Linear(100, num_classes)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def plain_layers(self) -> list[nn.Linear] | None:
        """The three layers when the net is nothing but Linear/ReLU (no dropout), else None:
        what the hand-written steps (lth_core.train.steps.mlp, lth_core.train.steps.stacked_mlp) compute."""
        if not isinstance(self.drop, nn.Identity):
            return None
        return [self.fc1, self.fc2, self.out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.out(x)
