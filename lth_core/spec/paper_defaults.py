"""The paper's hyperparameters for each model (Frankle & Carbin 2019, Figure 2 and Appendices G-I).

A view of the model registry (each entry's `paper_defaults`, in lth_core/registry/models/),
plain data free of torch, so that the API process can fill in defaults and show them to a
user before any worker touches the spec.
"""

from __future__ import annotations

from typing import Any

from lth_core.registry.models import MODEL_NAMES, MODELS

PAPER_DEFAULTS: dict[str, dict[str, Any]] = {name: e.paper_defaults for name, e in MODELS.items()}

__all__ = ["MODEL_NAMES", "PAPER_DEFAULTS"]
