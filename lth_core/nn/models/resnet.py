"""The paper's CIFAR "ResNet-18": a 20-layer ResNet (He et al. 2016, CIFAR variant).

16 channels, three stages of three basic blocks at 16/32/64 channels, average pool, fc 10:
270,896 conv and linear weights (267,696 in 3x3 convs, 2,560 in the two 1x1 shortcut convs and
640 in the output layer; the last two are what the paper leaves unpruned). The paper quotes
274K; batch-norm and bias parameters add only 1,578, so its count likely differs in a detail
it does not state.
"""

from __future__ import annotations

import torch
from torch import nn

from lth_core.nn.models.base import PrunableModel


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet20(PrunableModel):
    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        c_in = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(3):
                blocks.append(BasicBlock(c_in, width, stride=2 if stage > 0 and i == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(64, num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.out(self.drop(x))
