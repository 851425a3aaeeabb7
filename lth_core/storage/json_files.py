"""Strict JSON artifacts on a store, torch-free (the API and the report read them)."""

from __future__ import annotations

import json
import math
from typing import Any

from lth_core.storage.store import ArtifactStore


def strict_json(obj: Any) -> Any:
    """`obj` with every NaN or infinity as None: JSON has no such numbers, and strict parsers
    (JavaScript's JSON.parse) reject the `NaN` Python writes (a run's train_loss at iteration
    0, a diverged loss). The API sends the same values as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def json_bytes(obj: Any) -> bytes:
    """Strict JSON (see strict_json) as the engine writes it."""
    return (json.dumps(strict_json(obj), indent=1, allow_nan=False) + "\n").encode()


def put_json(store: ArtifactStore, key: str, obj: Any) -> None:
    store.put(key, json_bytes(obj))


def get_json(store: ArtifactStore, key: str) -> Any:
    return json.loads(store.get(key))
