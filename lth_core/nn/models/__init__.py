"""Building a registered model (lth_core.registry.models holds each model's facts): a built-in
architecture, or a plugin's build(input_shape, num_classes) -> nn.Module."""

from __future__ import annotations

import torch
from torch import nn

from lth_core.nn.models.base import PrunableModel, weight_kinds
from lth_core.registry import ModelEntry, load
from lth_core.registry.models import MODELS
from lth_core.registry.plugins import PluginError


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dropout: float = 0.0,
    seed: int | None = None,
) -> nn.Module:
    """Builds on the CPU so the same seed gives the same weights whatever the training device.
    A built-in is a PrunableModel; a plugin's module is returned as its build made it (its
    weights' kinds: lth_core.nn.models.base.weight_kinds)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    entry = MODELS[name]
    if entry.plugin is not None:
        return _build_plugin(entry, tuple(input_shape), num_classes, seed)
    factory = load(entry.factory)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return factory(tuple(input_shape), num_classes, dropout=dropout, **entry.factory_kwargs)


def _build_plugin(
    entry: ModelEntry, input_shape: tuple[int, ...], num_classes: int, seed: int | None
) -> nn.Module:
    """The plugin's build(input_shape, num_classes), its own initialization drawn from `seed`;
    a PluginError when it breaks the contract."""
    plugin = entry.plugin
    assert plugin is not None
    build = plugin.load()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            module = build(input_shape, num_classes)
        except Exception as exc:
            raise PluginError(
                f"{plugin.describe()}: build({input_shape}, {num_classes}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(module, nn.Module):
        raise PluginError(
            f"{plugin.describe()}: build must return a torch.nn.Module, not {type(module).__name__}"
        )
    try:
        kinds = weight_kinds(module)
    except ValueError as exc:
        raise PluginError(f"{plugin.describe()}: {exc}") from None
    if not kinds:
        raise PluginError(f"{plugin.describe()}: its module has no nn.Conv2d or nn.Linear to prune")
    return module


__all__ = ["PrunableModel", "build_model", "weight_kinds"]
