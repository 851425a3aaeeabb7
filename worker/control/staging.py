"""Trains a control run into a private file, published only while its claim is still held.

The engine writes a run's metrics file as its very last step, and that file's presence is what
marks the run finished. A worker whose run claim was taken over (it looked dead: a stalled
host, a long pause) notices at its next heartbeat or evaluation, but between its last check
and that final write it could still race the new holder for the same file. So a claimed
control run writes its metrics under ``levels/LLL/staging/<kind>.<token>.json``, a name no
other process uses, and the holder renames it into ``runs/`` (atomic on one file system) only
after checking in the database that it still holds the claim. Two processes therefore never
write the same file; at worst two renames put identical content in place, since every run is
a pure function of (spec, level, kind).

Only controls are staged: they write nothing but their metrics file. The ticket run also
writes the trained weights and stays under the experiment claim, as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lth_core.runs import TICKET
from lth_core.storage.layout import Layout

if TYPE_CHECKING:
    from lth_core.experiment import Experiment


def staging_path(layout: Layout, level: int, kind: str, token: str) -> Path:
    """Where the holder of ``token`` writes the run's metrics before publishing them."""
    return layout.level_dir(level) / "staging" / f"{kind}.{token}.json"


def train_staged(
    experiment: Experiment,
    level: int,
    kind: str,
    token: str,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Trains the control run ``kind`` of ``level``; returns its staged metrics file.
    ``should_stop`` (default: the experiment's) is checked at every evaluation."""
    if kind == TICKET:
        raise ValueError("the ticket run writes weights too; it is never staged")
    staged = staging_path(experiment.layout, level, kind, token)
    experiment.train_run(level, kind, metrics_path=staged, should_stop=should_stop)
    return staged


def publish(staged: Path, final: Path) -> None:
    """Moves a staged metrics file into place; from now on the run counts as finished."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)
