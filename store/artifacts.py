"""Where an experiment's files live under the data directory, in the layout of lth_core.

Every path starts from a validated id and an integer level, so no request can steer a path
outside ``DATA_DIR/experiments/<id>/`` (no ``..``, no separators, no absolute paths).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from lth_core.storage.layout import Layout
from store.settings import Settings

_HEX_ID = re.compile(r"[0-9a-f]{32}")
RUN_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


class InvalidId(ValueError):
    """An id that is not an experiment id; callers answer it as 'not found'."""


def normalize_id(experiment_id: str) -> str:
    """The canonical 32-hex-digit form of an id; a dashed UUID is accepted and normalized."""
    if _HEX_ID.fullmatch(experiment_id):
        return experiment_id
    if len(experiment_id) == 36:
        try:
            return uuid.UUID(experiment_id).hex
        except ValueError:
            pass
    raise InvalidId(f"{experiment_id[:80]!r} is not an experiment id")


def experiment_dir(settings: Settings, experiment_id: str) -> Path:
    """``DATA_DIR/experiments/<id>``: the engine's OUT directory for this experiment."""
    return settings.experiments_dir / normalize_id(experiment_id)


def layout(settings: Settings, experiment_id: str) -> Layout:
    """lth_core's artifact layout rooted at the (validated) experiment directory."""
    return Layout(experiment_dir(settings, experiment_id))


def _check_level(level: int) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 999:
        raise ValueError(f"level must be an integer between 0 and 999, not {level!r}")
    return level


def mask_path(settings: Settings, experiment_id: str, level: int) -> Path:
    """``levels/LLL/mask.safetensors``: one bool tensor per prunable weight."""
    return layout(settings, experiment_id).mask(_check_level(level))


def run_path(settings: Settings, experiment_id: str, level: int, kind: str) -> Path:
    """``levels/LLL/runs/<kind>.json``: one run's metrics and curve."""
    if not RUN_KIND.fullmatch(kind):
        raise ValueError(f"{kind!r} is not a run kind")
    return layout(settings, experiment_id).run_metrics(_check_level(level), kind)


def ticket_path(settings: Settings, experiment_id: str) -> Path:
    """``ticket.safetensors``: the winning ticket's masks and initial weights."""
    return layout(settings, experiment_id).ticket


def read_runs(settings: Settings, experiment_id: str, level: int) -> dict[str, dict[str, Any]]:
    """Every finished run of a level, by kind (the file name), in a stable order.

    Files are written atomically by the engine, so a file that exists is complete; one that
    does not parse is skipped rather than served half-read.
    """
    out: dict[str, dict[str, Any]] = {}
    directory = run_path(settings, experiment_id, level, "ticket").parent
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        if not RUN_KIND.fullmatch(path.stem):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out[path.stem] = data
    return out


def remove_experiment_dir(settings: Settings, experiment_id: str) -> None:
    """Deletes an experiment's artifacts; a missing directory is already the desired state."""
    shutil.rmtree(experiment_dir(settings, experiment_id), ignore_errors=True)
