"""The body of one ``lth.run_experiment`` task: lease an experiment, run its next unfinished
level, record it, hand on. This module is the order of those steps; the lease and every write
under it are :mod:`worker.level.lease`, and the parts of a level live in
:mod:`worker.level.repair` (gaps a crashed predecessor left), :mod:`worker.level.pipeline`
(which level to train, whether to wait for its controls), :mod:`worker.level.tickets`,
:mod:`worker.level.controls` (the level's control runs, offered to other workers) and
:mod:`worker.progress`.

One task runs one level, not a whole experiment, for three reasons: the broker's visibility
timeout and the task time limit only have to cover the longest level; a fresh worker child per
level returns GPU memory; and experiments sharing a pool of workers take turns level by level
instead of the first one monopolizing a GPU for days. At the end of a level the task gives the
lease up and sends the next level's message itself; the reconciler covers a lost hand-off.

Resuming is the engine's job: it skips every run that has a metrics file, so a level that was
interrupted restarts at its first unfinished run and produces exactly what an uninterrupted
run would have. Only this task, the holder of the experiment, records the level.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lth_core.spec import ExperimentSpec
from store.lease import LeaseOutcome
from store.settings import Settings
from worker.control.run import default_worker_name
from worker.engine import build_experiment, load_spec
from worker.heartbeat import Heartbeat, LeaseLost
from worker.level import controls as level_controls
from worker.level import pipeline
from worker.level.lease import MAX_ATTEMPTS, ExperimentLease, Outcome, stopped_outcome
from worker.level.repair import repair
from worker.level.tickets import train_tickets
from worker.progress import database_progress
from worker.stats import WorkerStats, tee

if TYPE_CHECKING:
    from lth_core.experiment import Experiment

__all__ = ["LevelTask", "Outcome"]  # Outcome: what callers compare run() with

log = logging.getLogger(__name__)


@dataclass
class LevelTask:
    """Runs the next level of one experiment; ``send_next`` asks for the level after it.

    ``send_controls(level, kinds)`` offers control runs to other workers; ``worker`` is this
    worker's name, recorded with every control run it trains; ``queue`` is the queue the
    message came from (stored with the experiment if it names none yet).
    """

    settings: Settings
    experiment_id: str
    send_next: Callable[[], None]
    send_controls: level_controls.SendControls = level_controls.offer_nowhere
    worker: str = field(default_factory=default_worker_name)
    device: str = "auto"
    max_attempts: int = MAX_ATTEMPTS
    queue: str | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    lease: ExperimentLease = field(init=False, repr=False)
    stats: WorkerStats = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.stats = WorkerStats(self.settings, self.worker)
        self.lease = ExperimentLease(
            self.settings,
            self.experiment_id,
            max_attempts=self.max_attempts,
            queue=self.queue,
            token=self.token,
        )

    def run(self) -> Outcome:
        claimed = self.lease.claim()
        if claimed is not LeaseOutcome.CLAIMED:
            return self.lease.not_claimed(claimed)
        log.info("experiment %s: claimed (token %s)", self.experiment_id, self.token[:8])
        try:
            with self.lease.held() as heartbeat:
                return self._run_claimed(heartbeat)
        except LeaseLost:
            log.warning("experiment %s: claim lost; stopped without recording", self.experiment_id)
            return Outcome.LOST
        except Exception as exc:
            return stopped_outcome(self.experiment_id, exc)
        finally:
            self.stats.close()

    def _run_claimed(self, heartbeat: Heartbeat) -> Outcome:
        spec = load_spec(self.settings, self.experiment_id)
        experiment = self._engine(spec, heartbeat)
        repair(self.settings, self.experiment_id, experiment, self.lease.record)
        pending = experiment.pending()
        if pending:
            self._run_pending(experiment, pending, heartbeat)
            if experiment.pending():
                return self.lease.hand_on(heartbeat, self.send_next)
        return self.lease.succeed(heartbeat)

    def _run_pending(
        self, experiment: Experiment, pending: list[tuple[int, str]], heartbeat: Heartbeat
    ) -> None:
        """Trains the next level's tickets, then completes the levels behind it and, unless it
        hands on (:mod:`worker.level.pipeline`), the level itself."""
        level, behind = pipeline.next_levels(experiment, pending)
        log.info("experiment %s: level %s, runs %s", self.experiment_id, level, pending)
        if level is not None:
            train_tickets(
                self.settings,
                self.experiment_id,
                experiment,
                level,
                pending,
                send_controls=self.send_controls,
                check_stop=lambda: self.lease.check_stop(heartbeat),
            )
        for lv in behind:  # older levels: wait for their controls, as without pipelining
            self._finish_level(experiment, lv, heartbeat, wait=True)
        if level is not None:
            wait = pipeline.waits_for_controls(self.settings, experiment, level)
            self._finish_level(experiment, level, heartbeat, wait=wait)

    def _finish_level(
        self, experiment: Experiment, level: int, heartbeat: Heartbeat, *, wait: bool
    ) -> None:
        """Completes the level's unfinished controls (trained here unless held elsewhere) and
        records the level; with ``wait=False``, controls still held elsewhere leave it for a
        later task."""
        controls = [
            k for k in experiment.controls_of(level) if not experiment.is_run_done(level, k)
        ]
        elsewhere = level_controls.complete(
            self.settings,
            experiment,
            self.experiment_id,
            level,
            controls,
            worker=self.worker,
            should_stop=lambda: self.lease.should_stop(heartbeat),
            check_stop=lambda: self.lease.check_stop(heartbeat),
            wait=wait,
        )
        if elsewhere:
            log.info(
                "experiment %s: level %d's controls %s held elsewhere; handing on",
                self.experiment_id,
                level,
                elsewhere,
            )
            return
        self.lease.record(level, experiment.finish_level(level))

    def _engine(self, spec: ExperimentSpec, heartbeat: Heartbeat) -> Experiment:
        """The engine, reporting into the experiment's row (what the API shows) and stopping
        at the next evaluation once the lease is lost or a cancel is asked for."""
        writer = database_progress(
            self.settings, self.experiment_id, levels=spec.pruning.levels + 1
        )
        experiment = build_experiment(
            self.settings,
            self.experiment_id,
            spec,
            device=self.device,
            progress=tee(writer, self.stats),
            should_stop=lambda: self.lease.should_stop(heartbeat),
            repair=True,
        )
        writer.plan = experiment  # for the ETA in the progress it writes
        return experiment
