"""Conv-2/4/6: the paper's VGG-like CIFAR networks (3x3 same-padded convs in pairs, then fc 256-256).

On 3x32x32 inputs Conv-2 has 4,300,992 weights (38,592 conv), Conv-4 2,425,024 (259,776 conv),
Conv-6 2,261,184 (1,144,512 conv). The paper quotes 1.7M for Conv-6, which its own layer list
with same padding does not give; we build the layer list.
"""

from __future__ import annotations

import torch
from torch import nn

from lth_core.nn.models.base import PrunableModel

_WIDTHS = {2: (64,), 4: (64, 128), 6: (64, 128, 256)}


class ConvNet(PrunableModel):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        depth: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        convs: list[nn.Module] = []
        for width_out in _WIDTHS[depth]:
            for _ in range(2):
                convs.append(nn.Conv2d(channels, width_out, kernel_size=3, padding=1))
                channels = width_out
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(f"input {input_shape} is too small for conv{depth}")
        self.convs = nn.ModuleList(convs)
        self.fc1 = nn.Linear(channels * height * width, 256)
        self.fc2 = nn.Linear(256, 256)
        self.out = nn.Linear(256, num_classes)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            if i % 2 == 1:
                x = nn.functional.max_pool2d(x, 2)
        x = x.flatten(1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.out(x)
