"""Elapsed time, speed and ETA of an experiment, as `GET /experiments/{id}` shows them.

The worker measures the speed and estimates the time left when it writes progress
(lth_core.results.eta, with `written_at`); the elapsed time comes from the experiment's timestamps.
Everything is as of the row's last update (`updated_at`, which every progress write sets,
at least twice a second while a run trains), never of the request's clock: the body is a
function of the row, so its ETag (service.reads) stays true. Only a running experiment has
an ETA. Torch-free.
"""

from __future__ import annotations

import math
from typing import Any

from store.models import Experiment, Status


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def timing(experiment: Experiment, raw: dict[str, Any]) -> dict[str, Any]:
    """``elapsed_seconds``, ``iterations_per_second``, ``level_eta_seconds``, ``eta_seconds``."""
    out: dict[str, Any] = {}
    if experiment.started_at is not None:
        end = experiment.finished_at or experiment.updated_at
        out["elapsed_seconds"] = round(max(0.0, (end - experiment.started_at).total_seconds()), 1)
    if experiment.status != Status.RUNNING:
        return out
    rate = _number(raw.get("iterations_per_second"))
    if rate is None:
        return out
    out["iterations_per_second"] = rate
    written = _number(raw.get("written_at"))
    updated = experiment.updated_at.timestamp()
    age = max(0.0, updated - written) if written is not None else 0.0
    for key in ("level_eta_seconds", "eta_seconds"):
        value = _number(raw.get(key))
        if value is not None:
            out[key] = round(max(0.0, value - age), 1)
    return out
