"""An offered control: the body of a ``lth.run_control`` task, which trains one control run
that the level's holder offered to other workers (:mod:`worker.level.controls`).

The message is only an offer. The database and the files decide: a run whose experiment is no
longer active, whose level has no mask yet (never true for a message the level task sent, but
a message can be re-delivered very late) or is finished already, or that another live worker
holds, is left alone, cheaply and without importing torch. Otherwise the run is claimed and
trained; nothing here ever changes the experiment's status or records a level: the level's
holder does that once every run of the level is on disk. A control that fails is given back
with its error, and the level's holder then runs it itself, so a failure is reported once,
by the one task that owns the experiment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from lth_core.storage.layout import KEYS
from store import claims
from store.artifacts import experiment_store
from store.db import session_scope
from store.lease import LeaseOutcome
from store.settings import Settings
from worker.control.run import ControlOutcome, ControlRun, default_worker_name
from worker.engine import build_experiment, load_spec
from worker.heartbeat import LeaseLost
from worker.stats import WorkerStats

log = logging.getLogger(__name__)


@dataclass
class OfferedControl:
    """Attempts the control run ``kind`` of ``level`` of one experiment on this worker."""

    settings: Settings
    experiment_id: str
    level: int
    kind: str
    worker: str = field(default_factory=default_worker_name)
    device: str = "auto"

    def run(self) -> ControlOutcome:
        if not self._wanted():
            return ControlOutcome.NOTHING
        store = experiment_store(self.settings, self.experiment_id)
        if store.exists(KEYS.run_metrics(self.level, self.kind)):
            return ControlOutcome.DONE
        if store.exists(KEYS.summary(self.level)) or not store.exists(KEYS.mask(self.level)):
            return ControlOutcome.NOT_READY
        control = ControlRun(
            self.settings, self.experiment_id, self.level, self.kind, worker=self.worker
        )
        claimed = control.claim()
        if claimed is not LeaseOutcome.CLAIMED:
            return {
                LeaseOutcome.HELD: ControlOutcome.WAITING,
                LeaseOutcome.FINISHED: ControlOutcome.DONE,
            }.get(claimed, ControlOutcome.NOT_READY)
        log.info(
            "experiment %s: level %d %s claimed (token %s)",
            self.experiment_id,
            self.level,
            self.kind,
            control.token[:8],
        )
        return self._train(control)

    def _wanted(self) -> bool:
        with session_scope(self.settings, read_only=True) as session:
            return claims.wants_work(session, self.experiment_id)

    def _should_stop(self) -> bool:
        """Checked at every evaluation: the experiment was cancelled, finished or deleted."""
        try:
            return not self._wanted()
        except Exception:
            log.warning("could not read the experiment's state; continuing", exc_info=True)
            return False

    def _train(self, control: ControlRun) -> ControlOutcome:
        from lth_core.experiment import Cancelled

        stats = WorkerStats(self.settings, self.worker)
        try:
            with control.held() as heartbeat:
                spec = load_spec(self.settings, self.experiment_id)
                experiment = build_experiment(
                    self.settings,
                    self.experiment_id,
                    spec,
                    device=self.device,
                    # The level's holder reports the experiment's progress; this worker
                    # only counts what it trained (/metrics).
                    progress=stats,
                    should_stop=self._should_stop,
                )
                control.train(experiment, heartbeat, self._should_stop)
        except LeaseLost:
            log.warning(
                "experiment %s: level %d %s was taken over; stopped",
                self.experiment_id,
                self.level,
                self.kind,
            )
            return ControlOutcome.LOST
        except Cancelled:
            log.info(
                "experiment %s: level %d %s stopped (experiment no longer active)",
                self.experiment_id,
                self.level,
                self.kind,
            )
            return ControlOutcome.STOPPED
        except Exception:
            log.exception(
                "experiment %s: level %d %s failed; given back to the level's holder",
                self.experiment_id,
                self.level,
                self.kind,
            )
            return ControlOutcome.FAILED
        finally:
            stats.close()
        return ControlOutcome.RAN
