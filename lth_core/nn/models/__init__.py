"""Building a registered model (lth_core.registry.models holds each model's facts)."""

from __future__ import annotations

import torch

from lth_core.nn.models.base import PrunableModel
from lth_core.registry import load
from lth_core.registry.models import MODELS


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dropout: float = 0.0,
    seed: int | None = None,
) -> PrunableModel:
    """Builds on the CPU so the same seed gives the same weights whatever the training device."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    entry = MODELS[name]
    factory = load(entry.factory)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return factory(tuple(input_shape), num_classes, dropout=dropout, **entry.factory_kwargs)


__all__ = ["PrunableModel", "build_model"]
