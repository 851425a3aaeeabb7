"""Model registry: spec name -> constructor taking (input_shape, num_classes, dropout)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from lth_core.models.base import PrunableModel
from lth_core.models.conv import ConvNet
from lth_core.models.lenet import LeNet300100
from lth_core.models.resnet import ResNet20
from lth_core.models.vgg import VGG19

ModelFactory = Callable[..., PrunableModel]

REGISTRY: dict[str, ModelFactory] = {
    "lenet_300_100": LeNet300100,
    "conv2": partial(ConvNet, depth=2),
    "conv4": partial(ConvNet, depth=4),
    "conv6": partial(ConvNet, depth=6),
    "vgg19": VGG19,
    "resnet18": ResNet20,
}


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dropout: float = 0.0,
    seed: int | None = None,
) -> PrunableModel:
    """Builds on the CPU so the same seed gives the same weights whatever the training device."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return REGISTRY[name](tuple(input_shape), num_classes, dropout=dropout)


__all__ = ["REGISTRY", "PrunableModel", "build_model"]
