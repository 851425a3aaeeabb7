"""Trains a control run into a private file, published only while its claim is still held.

The engine writes a run's metrics file as its very last step, and that file's presence is what
marks the run finished. A worker whose run claim was taken over (it looked dead: a stalled
host, a long pause) notices at its next heartbeat or evaluation, but between its last check
and that final write it could still race the new holder for the same file. So a claimed
control run writes its metrics under ``levels/LLL/staging/<kind>.<token>.json``, a key no
other process uses, and the holder copies it into ``runs/`` (each put is atomic: whole or
absent) only after checking in the database that it still holds the claim. Two processes
therefore never write the same staged object; at worst two publishes put identical content in
place, since every run is a pure function of (spec, level, kind). All of it goes through the
experiment's artifact store, so it works the same on a local folder or an object store.

Only controls are staged: they write nothing but their metrics file. The ticket run also
writes the trained weights and stays under the experiment claim, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lth_core.runs import TICKET
from lth_core.storage.layout import KEYS
from lth_core.storage.store import ArtifactStore

if TYPE_CHECKING:
    from lth_core.experiment import Experiment


def train_staged(
    experiment: Experiment,
    level: int,
    kind: str,
    token: str,
    should_stop: Callable[[], bool] | None = None,
) -> str:
    """Trains the control run ``kind`` of ``level``; returns its staged metrics' key.
    ``should_stop`` (default: the experiment's) is checked at every evaluation."""
    if kind == TICKET:
        raise ValueError("the ticket run writes weights too; it is never staged")
    staged = KEYS.staged_metrics(level, kind, token)
    experiment.train_run(level, kind, metrics_key=staged, should_stop=should_stop)
    return staged


def publish(store: ArtifactStore, staged: str, level: int, kind: str) -> None:
    """Puts a staged metrics object into place; from now on the run counts as finished."""
    store.put(KEYS.run_metrics(level, kind), store.get(staged))
    store.delete(staged)
