"""The paper's hyperparameters for each model (Frankle & Carbin 2019, Figure 2 and Appendices G-I).

A view of the model registry (each entry's `paper_defaults`, in lth_core/registry/models/),
plain data free of torch, so that the API process can fill in defaults and show them to a
user before any worker touches the spec.
"""

from __future__ import annotations

import copy
from typing import Any

from lth_core.registry.models import MODEL_NAMES, MODELS

PAPER_DEFAULTS: dict[str, dict[str, Any]] = {name: e.paper_defaults for name, e in MODELS.items()}

__all__ = ["MODEL_NAMES", "PAPER_DEFAULTS"]


def merge(defaults: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """User values over paper defaults, recursively for nested sections."""
    out = copy.deepcopy(defaults)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
