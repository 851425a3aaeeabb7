"""Pipelined levels: which level a task trains, and whether it waits for that level's controls.

The next level's ticket needs only this level's ticket (its mask is pruned from the ticket's
weights), not this level's controls. So a task trains the first level whose ticket is not done
and, rather than wait for controls that workers elsewhere hold, hands on to the next level's
ticket; a later task comes back for the level left behind, completes it and records it, in
order, before training its own. ``LTH_WORKER_PIPELINE=0`` (``settings.worker_pipeline``) makes
every level wait for its controls, as before pipelining.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.settings import Settings

if TYPE_CHECKING:
    from lth_core.experiment import Experiment


def next_levels(
    experiment: Experiment, pending: list[tuple[int, str]]
) -> tuple[int | None, list[int]]:
    """The level whose ticket to train (None when every ticket is done) and the levels
    behind it to complete first: tickets done, controls held elsewhere when an earlier task
    moved on, or every run done but a crash left the level unrecorded."""
    levels = sorted({lv for lv, _ in pending})
    level = next((lv for lv in levels if not experiment.tickets_done(lv)), None)
    behind = [
        lv
        for lv in experiment.levels
        if not experiment.is_level_done(lv) and (level is None or lv < level)
    ]
    return level, behind


def waits_for_controls(settings: Settings, experiment: Experiment, level: int) -> bool:
    """Whether the level's holder waits for controls held elsewhere instead of handing on:
    always with pipelining off, at the last level (no next ticket to start), and for a
    stacked level (its controls trained with its ticket, here)."""
    return (
        not settings.worker_pipeline
        or level >= experiment.spec.last_level
        or experiment.stacks_level(level)
    )
