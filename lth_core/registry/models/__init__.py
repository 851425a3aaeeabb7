"""The model registry: one line per entry (each entry's file holds its facts), plus the models
of installed plugins (`lth.models` entry points, lth_core.registry.plugins)."""

from __future__ import annotations

from typing import Any

from lth_core.registry import ModelEntry, Registry
from lth_core.registry.plugins import MODELS_GROUP, Plugin, PluginError, facts

#: What a plugin model's facts (its `lth.model_facts` entry point) may say; all optional.
MODEL_FACTS = {
    "paper_defaults": "spec sections filled in under the user's, like a built-in's",
    "layer_kinds": "the kinds of its prunable weights, for listings",
    "description": "one line for listings",
}


def plugin_model(plugin: Plugin) -> ModelEntry:
    """A plugin's model as a registry entry: its build callable and its facts, if any."""
    found: dict[str, Any] = facts(plugin, MODEL_FACTS)
    defaults = found.get("paper_defaults", {})
    kinds = found.get("layer_kinds", ())
    if not isinstance(defaults, dict) or not all(isinstance(k, str) for k in defaults):
        raise PluginError(f"{plugin.describe()}: paper_defaults must be a dict of spec sections")
    if not isinstance(kinds, list | tuple) or not all(isinstance(k, str) for k in kinds):
        raise PluginError(f"{plugin.describe()}: layer_kinds must be a list of kind names")
    return ModelEntry(
        name=plugin.name,
        factory=plugin.ref,
        paper_defaults=defaults,
        layer_kinds=tuple(kinds),
        plugin=plugin,
        description=str(found.get("description", "")),
    )


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
    group=MODELS_GROUP,
    plugin_entry=plugin_model,
)
#: The built-in models (plugins: MODELS.names()).
MODEL_NAMES: tuple[str, ...] = MODELS.builtin_names()
