"""A plugin's dataset: its load(root, seed) -> {"x_train", "y_train", "x_test", "y_test"} as
RawData, checked against the contract (lth_core.registry.plugins) and its facts.

The validation split is then held out of x_train as for every dataset (split_and_normalize),
and the data are normalized with the facts' per-channel mean and std, or left as given.
"""

from __future__ import annotations

from typing import Any

import torch

from lth_core.nn.data.base import RawData
from lth_core.registry import DatasetEntry
from lth_core.registry.plugins import PluginError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_plugin_data(entry: DatasetEntry, root: str | None, seed: int) -> RawData:
    plugin = entry.plugin
    assert plugin is not None
    where = plugin.describe()
    load = plugin.load()
    try:
        out = load(root, seed)
    except Exception as exc:
        raise PluginError(
            f"{where}: load(root={root!r}, seed={seed}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, dict) or set(out) != set(KEYS):
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise PluginError(
            f"{where}: load must return a dict with keys {', '.join(KEYS)}; got {got}"
        )
    x_train, x_test = (_images(where, k, out[k]) for k in ("x_train", "x_test"))
    y_train, y_test = (_labels(where, k, out[k]) for k in ("y_train", "y_test"))
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y) or len(x) == 0:
            raise PluginError(f"{where}: x_{split} has {len(x)} examples, y_{split} {len(y)}")
    shape = tuple(x_train.shape[1:])
    if tuple(x_test.shape[1:]) != shape or (entry.input_shape or shape) != shape:
        raise PluginError(
            f"{where}: example shapes differ: x_train {list(shape)}, x_test "
            f"{list(x_test.shape[1:])}, facts {list(entry.input_shape or shape)}"
        )
    largest = int(max(y_train.max(), y_test.max()))
    classes = entry.num_classes or largest + 1
    if largest >= classes or int(min(y_train.min(), y_test.min())) < 0:
        raise PluginError(f"{where}: labels must lie in 0..{classes - 1}")
    channels = shape[0]
    mean, std = entry.normalization or ((0.0,) * channels, (1.0,) * channels)
    if len(mean) != channels:
        raise PluginError(f"{where}: normalization has {len(mean)} channels, the data {channels}")
    return RawData(x_train, y_train, x_test, y_test, classes, mean, std)


def _images(where: str, key: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 4 or not value.is_floating_point():
        raise PluginError(f"{where}: {key} must be a float tensor (N, channels, height, width)")
    return value.detach().to("cpu", torch.float32).contiguous()


def _labels(where: str, key: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.is_floating_point():
        raise PluginError(f"{where}: {key} must be an integer tensor (N,) of class indices")
    return value.detach().to("cpu", torch.int64).contiguous()
