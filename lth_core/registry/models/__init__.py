"""The model registry: one line per entry (each entry's file holds its facts)."""

from __future__ import annotations

from lth_core.registry import ModelEntry, Registry

MODELS: Registry[ModelEntry] = Registry(
    "model",
    {
        "lenet_300_100": "lth_core.registry.models.lenet_300_100:ENTRY",
        "conv2": "lth_core.registry.models.conv2:ENTRY",
        "conv4": "lth_core.registry.models.conv4:ENTRY",
        "conv6": "lth_core.registry.models.conv6:ENTRY",
        "vgg19": "lth_core.registry.models.vgg19:ENTRY",
        "resnet18": "lth_core.registry.models.resnet18:ENTRY",
    },
)
MODEL_NAMES: tuple[str, ...] = MODELS.names()
