"""Repair of the gaps a crashed predecessor left between the engine's files and the database.

The engine writes a level's files first and the worker records the level in the database
second; a worker killed between the two leaves a level that is finished on disk but not in the
database (its summary exists, its row does not), or a level whose runs all finished but whose
summary was never written. The next holder closes both gaps before training anything.
Recording is idempotent, so redoing either is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from store.db import session_scope
from store.models import Level as LevelRow
from store.settings import Settings

if TYPE_CHECKING:
    from lth_core.experiment import Experiment

#: ``record(level, summary)``: commits a finished level under the caller's lease.
Record = Callable[[int, dict[str, Any]], None]


def recorded_levels(settings: Settings, experiment_id: str) -> set[int]:
    """The levels the database has a row for."""
    with session_scope(settings, read_only=True) as session:
        return set(
            session.scalars(select(LevelRow.level).where(LevelRow.experiment_id == experiment_id))
        )


def repair(settings: Settings, experiment_id: str, experiment: Experiment, record: Record) -> None:
    """Records every level finished on disk but missing in the database, in order, and
    finishes a level whose runs are all done but whose summary is missing; stops at the first
    level with work left."""
    recorded = recorded_levels(settings, experiment_id)
    for level in experiment.levels:
        if experiment.is_level_done(level):
            if level not in recorded:
                record(level, read_summary(experiment, level))
            continue
        if all(experiment.is_run_done(level, k) for k in experiment.runs_at_level(level)):
            record(level, experiment.finish_level(level))
            continue
        return


def read_summary(experiment: Experiment, level: int) -> dict[str, Any]:
    """A finished level's ``summary.json`` as the engine wrote it."""
    from lth_core.storage.json_files import get_json
    from lth_core.storage.layout import KEYS

    return get_json(experiment.store, KEYS.summary(level))
