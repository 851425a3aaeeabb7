"""The control runs of a level, orchestrated by the level's holder: offer, steal, wait, settle.

Once the level's mask is on disk, the holder registers a claimable row per unfinished control
run (store.run_claims) and offers the unclaimed ones to other workers (``send_controls``: a
Celery group of ``lth.run_control`` messages), then trains the ticket, which the next level
needs. Then it trains every control nobody has claimed (work stealing: a worker alone finishes
everything, and a lost message costs nothing), and waits, polling the database, for controls
that live workers elsewhere are training, taking over any whose heartbeat goes stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from store import run_claims
from store.db import session_scope
from store.settings import Settings
from worker.control.run import ControlOutcome, ControlRun

if TYPE_CHECKING:
    from lth_core.experiment import Experiment

log = logging.getLogger(__name__)

#: ``send_controls(level, kinds)``: offers control runs of ``level`` to other workers.
SendControls = Callable[[int, list[str]], None]


def offer_nowhere(level: int, kinds: list[str]) -> None:
    """No other workers to offer controls to (in-process use): the holder trains them all."""


def control_poll_seconds(settings: Settings) -> float:
    """How often a level waiting on controls elsewhere looks again (and checks for cancel)."""
    return max(0.1, min(0.5, settings.heartbeat_seconds / 2))


def offer(
    settings: Settings,
    experiment_id: str,
    level: int,
    controls: list[str],
    send_controls: SendControls,
) -> None:
    """Registers the level's unfinished controls and offers the unclaimed ones elsewhere.

    The rows are committed before any message is sent, so a worker that gets a message finds
    its row; sending is best effort (the holder trains whatever nobody takes).
    """
    if not controls:
        return
    with session_scope(settings) as session:
        run_claims.register(session, experiment_id, level, controls)
        offered = run_claims.unheld(
            session,
            experiment_id,
            level,
            controls,
            timeout_seconds=settings.heartbeat_timeout_seconds,
        )
    if not offered:
        return
    try:
        send_controls(level, offered)
    except Exception:
        log.warning(
            "could not offer the controls of %s; running them here", experiment_id, exc_info=True
        )


def complete(
    settings: Settings,
    experiment: Experiment,
    experiment_id: str,
    level: int,
    controls: list[str],
    *,
    worker: str,
    should_stop: Callable[[], bool],
    check_stop: Callable[[], None],
    wait: bool = True,
) -> list[str]:
    """Trains every control nobody else holds; waits for those live elsewhere (or, with
    ``wait=False``, returns them at once: the pipelined holder moves on to the next level's
    ticket and comes back for them). Returns the controls still held elsewhere ([] once the
    level's controls are all done, and then the level's run rows are settled).

    Never waits on an unclaimed run (it takes it), so one worker alone cannot deadlock; a
    holder elsewhere that dies is taken over once its heartbeat is stale; ``check_stop``
    (cancellation, a lost experiment lease) raises on every pass.
    """
    poll = control_poll_seconds(settings)
    waiting = list(controls)
    while waiting:
        still = []
        for kind in waiting:
            check_stop()
            control = ControlRun(settings, experiment_id, level, kind, worker=worker)
            if control.run_here(experiment, should_stop) is ControlOutcome.WAITING:
                still.append(kind)
        waiting = still
        if waiting and not wait:
            return waiting
        if waiting:
            check_stop()
            time.sleep(poll)
    # Every control of the level, not only these: a predecessor may have died between a
    # run's file appearing and its row being marked finished.
    every = experiment.controls_of(level)
    if every:
        with session_scope(settings) as session:
            run_claims.settle(session, experiment_id, level, every)
    return []
