"""Training a level's tickets, after offering its controls to other workers.

The tickets come first because the next level's mask is pruned from them (every trial's
ticket, so all of them train here) while the controls feed nothing but this level's summary.
Offering the controls before training lets other workers train them alongside; a stacked level
(the spec's ``training.stack_runs``, ``lth_core.train.stacked.should_stack``) trains its ticket and
controls as one model here, so there is nothing to offer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from store.settings import Settings
from worker.level import controls as level_controls

if TYPE_CHECKING:
    from lth_core.experiment import Experiment


def train_tickets(
    settings: Settings,
    experiment_id: str,
    experiment: Experiment,
    level: int,
    pending: list[tuple[int, str]],
    *,
    send_controls: level_controls.SendControls,
    check_stop: Callable[[], None],
) -> None:
    """Prepares the level (its mask), offers its pending controls and trains its tickets (a
    stacked level: all its runs); ``check_stop`` raises once the level must stop."""
    experiment.prepare_level(level)
    if experiment.stacks_level(level):
        check_stop()
        experiment.train_runs(level)
        return
    tickets = experiment.tickets_at(level)
    controls = [k for run_level, k in pending if run_level == level and k not in tickets]
    level_controls.offer(settings, experiment_id, level, controls, send_controls)
    check_stop()
    for ticket in tickets:
        if not experiment.is_run_done(level, ticket):
            experiment.train_run(level, ticket)
