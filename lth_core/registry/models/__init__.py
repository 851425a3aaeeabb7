"""The model registry: one line per entry (each entry's file holds its facts)."""

from __future__ import annotations

from lth_core.registry import ModelEntry
from lth_core.registry.models import conv2, conv4, conv6, lenet_300_100, resnet18, vgg19

MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        lenet_300_100.ENTRY,
        conv2.ENTRY,
        conv4.ENTRY,
        conv6.ENTRY,
        vgg19.ENTRY,
        resnet18.ENTRY,
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
