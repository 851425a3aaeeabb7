"""The paper's hyperparameters for each model (Frankle & Carbin 2019, Figure 2 and Appendices G-I).

A view of the model registry (each entry's `paper_defaults`, in lth_core/registry/models/),
plain data free of torch, so that the API process can fill in defaults and show them to a
user before any worker touches the spec. A plugin's model has the defaults its facts give,
or none: then the spec carries its dataset, training and pruning sections itself.
"""

from __future__ import annotations

import copy
from typing import Any

from lth_core.registry.models import MODEL_NAMES, MODELS

__all__ = ["MODEL_NAMES", "merge", "paper_defaults_of", "without_defaults"]


def paper_defaults_of(model: Any) -> dict[str, Any] | None:
    """The spec sections filled in under the user's for `model`; None: unknown, or none."""
    if not isinstance(model, str) or model not in MODELS:
        return None
    return MODELS[model].paper_defaults or None


def without_defaults(model: Any) -> str | None:
    """Why a known model's spec must give its sections itself (a plugin without paper
    defaults); None when the model has them or is unknown."""
    if not isinstance(model, str) or model not in MODELS or paper_defaults_of(model):
        return None
    plugin = MODELS.origin(model)
    source = f" (plugin package {plugin.requirement})" if plugin is not None else ""
    return (
        f"model {model!r}{source} has no paper defaults, so the spec gives dataset, "
        "training and pruning itself"
    )


def merge(defaults: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """User values over paper defaults, recursively for nested sections."""
    out = copy.deepcopy(defaults)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
