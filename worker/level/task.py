"""The body of one ``lth.run_experiment`` task: lease an experiment, run its next unfinished
level, record it, hand on. This module is the lease's lifecycle; the parts of a level live in
:mod:`worker.level.repair` (gaps a crashed predecessor left), :mod:`worker.level.controls`
(the level's control runs, offered to other workers) and :mod:`worker.progress`.

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
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lth_core.spec import ExperimentSpec
from store import claims
from store import experiments as repo
from store.db import session_scope
from store.lease import LeaseOutcome
from store.models import Status
from store.settings import Settings
from worker.control.run import default_worker_name
from worker.engine import build_experiment, load_spec
from worker.heartbeat import Heartbeat, LeaseLost, held
from worker.level import controls as level_controls
from worker.level.repair import repair
from worker.progress import database_progress

if TYPE_CHECKING:
    from lth_core.experiment import Experiment

log = logging.getLogger(__name__)

#: Claims in a row without finishing a level before the experiment is failed. A level that
#: kills its worker (segfault, out-of-memory kill, hard time limit) would otherwise loop.
MAX_ATTEMPTS = 3


class Outcome(StrEnum):
    """What one task did; the task returns it (useful in logs and tests)."""

    LEVEL_DONE = "level_done"  # a level finished and the next one was sent
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DUPLICATE = "duplicate"  # a live claim is held by another copy: nothing run
    NOTHING = "nothing"  # finished or deleted already
    LOST = "lost"  # the claim was taken over while this copy ran: it stopped


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

    # ----------------------------------------------------------------- lease

    def run(self) -> Outcome:
        with session_scope(self.settings) as session:
            claimed = claims.claim(
                session,
                self.experiment_id,
                self.token,
                timeout_seconds=self.settings.heartbeat_timeout_seconds,
                max_attempts=self.max_attempts,
                queue=self.queue,
            )
        if claimed is not LeaseOutcome.CLAIMED:
            return self._not_claimed(claimed)
        log.info("experiment %s: claimed (token %s)", self.experiment_id, self.token[:8])
        try:
            with held(
                self._beat,
                self.settings.heartbeat_seconds,
                name=f"claim {self.experiment_id}",
                on_error=self._record_failure,
            ) as heartbeat:
                return self._run_claimed(heartbeat)
        except LeaseLost:
            log.warning("experiment %s: claim lost; stopped without recording", self.experiment_id)
            return Outcome.LOST
        except Exception as exc:
            return self._stopped_outcome(exc)

    def _beat(self) -> bool:
        with session_scope(self.settings) as session:
            return claims.heartbeat(session, self.experiment_id, self.token)

    def _should_stop(self, heartbeat: Heartbeat) -> bool:
        """Checked by the engine at every evaluation: lost claim, or the API's cancel flag."""
        if heartbeat.lost:
            return True
        try:
            with session_scope(self.settings, read_only=True) as session:
                return claims.cancel_requested(session, self.experiment_id)
        except Exception:
            log.warning("could not read the cancel flag; continuing", exc_info=True)
            return False

    def _check_stop(self, heartbeat: Heartbeat) -> None:
        from lth_core.experiment import Cancelled

        if self._should_stop(heartbeat):
            raise Cancelled()

    def _not_claimed(self, claimed: LeaseOutcome) -> Outcome:
        log.info("experiment %s: not claimed (%s)", self.experiment_id, claimed)
        timeout = self.settings.heartbeat_timeout_seconds
        if claimed is LeaseOutcome.HELD:
            return Outcome.DUPLICATE
        if claimed is LeaseOutcome.CANCEL_REQUESTED:
            with session_scope(self.settings) as session:
                claims.finish_unclaimed(
                    session, self.experiment_id, Status.CANCELLED, timeout_seconds=timeout
                )
            return Outcome.CANCELLED
        if claimed is LeaseOutcome.EXHAUSTED:
            with session_scope(self.settings) as session:
                claims.finish_unclaimed(
                    session,
                    self.experiment_id,
                    Status.FAILED,
                    timeout_seconds=timeout,
                    error_type="WorkerLost",
                    error_message=(
                        f"the worker running this experiment's next level was lost "
                        f"{self.max_attempts} times in a row (killed, out of memory, or over "
                        f"the time limit of {self.settings.task_time_limit_seconds:.0f} s)"
                    ),
                )
            return Outcome.FAILED
        return Outcome.NOTHING

    def _record_failure(self, exc: BaseException) -> None:
        """The final status for a level stopped by ``exc`` (cancelled or failed), written under
        the lease (``claim_token``), so a copy that lost the lease writes nothing."""
        from lth_core.experiment import Cancelled

        if not isinstance(exc, Exception):
            return  # KeyboardInterrupt, SystemExit: the process ends; the lease expires
        with session_scope(self.settings) as session:
            if isinstance(exc, Cancelled):
                repo.mark_cancelled(session, self.experiment_id, claim_token=self.token)
                return
            error_type, message = _describe(exc, self.settings)
            log.exception("experiment %s failed", self.experiment_id, exc_info=exc)
            repo.mark_failed(
                session, self.experiment_id, error_type, message, claim_token=self.token
            )

    def _stopped_outcome(self, exc: Exception) -> Outcome:
        from lth_core.experiment import Cancelled

        if isinstance(exc, Cancelled):
            log.info("experiment %s: cancelled", self.experiment_id)
            return Outcome.CANCELLED
        return Outcome.FAILED

    # ----------------------------------------------------------------- work

    def _run_claimed(self, heartbeat: Heartbeat) -> Outcome:
        spec = load_spec(self.settings, self.experiment_id)
        experiment = self._engine(spec, heartbeat)
        repair(self.settings, self.experiment_id, experiment, self._record)
        pending = experiment.pending()
        if pending:
            # Pipelined levels: the next level's ticket needs only this level's ticket, not its
            # controls. The level to train is the first whose ticket is not done; the levels
            # before it (tickets done, controls held by workers elsewhere when an earlier task
            # moved on) are completed and recorded after it, in order.
            levels = sorted({lv for lv, _ in pending})
            level = next((lv for lv in levels if not experiment.tickets_done(lv)), None)
            behind = [  # also any whose runs are all done but which a crash left unrecorded
                lv
                for lv in experiment.levels
                if not experiment.is_level_done(lv) and (level is None or lv < level)
            ]
            log.info("experiment %s: level %s, runs %s", self.experiment_id, level, pending)
            if level is not None:
                self._train_ticket_level(experiment, level, pending, heartbeat)
            for lv in behind:  # older levels: wait for their controls, as without pipelining
                self._complete_controls(experiment, lv, heartbeat, wait=True)
                self._record(lv, experiment.finish_level(lv))
            if level is not None:
                # Move on rather than wait for controls held elsewhere when a next level's
                # ticket can start now (its mask needs only this ticket); LTH_WORKER_PIPELINE=0
                # (settings.worker_pipeline) makes every level wait, as before pipelining.
                wait = (
                    not self.settings.worker_pipeline
                    or level >= experiment.spec.last_level
                    or experiment.stacks_level(level)
                )
                elsewhere = self._complete_controls(experiment, level, heartbeat, wait=wait)
                if elsewhere:
                    log.info(
                        "experiment %s: level %d's controls %s held elsewhere; handing on",
                        self.experiment_id,
                        level,
                        elsewhere,
                    )
                else:
                    self._record(level, experiment.finish_level(level))
            if experiment.pending():
                return self._hand_on(heartbeat)
        heartbeat.stop()  # the lease ends here; a beat after it must not report it lost
        with session_scope(self.settings) as session:
            if not repo.mark_succeeded(session, self.experiment_id, claim_token=self.token):
                raise LeaseLost()
        log.info("experiment %s: succeeded", self.experiment_id)
        return Outcome.SUCCEEDED

    def _train_ticket_level(
        self,
        experiment: Experiment,
        level: int,
        pending: list[tuple[int, str]],
        heartbeat: Heartbeat,
    ) -> None:
        """Prepares the level, offers its controls elsewhere and trains its ticket (a stacked
        level: all its runs, here)."""
        experiment.prepare_level(level)
        if experiment.stacks_level(level):
            # Ticket and controls train as one stacked model here (the spec's
            # training.stack_runs and lth_core.stacked.should_stack): nothing to offer.
            self._check_stop(heartbeat)
            experiment.train_runs(level)
            return
        # Every trial's ticket is trained here (the next level's masks need them all), the
        # controls are offered elsewhere.
        tickets = experiment.tickets_at(level)
        controls = [k for run_level, k in pending if run_level == level and k not in tickets]
        level_controls.offer(self.settings, self.experiment_id, level, controls, self.send_controls)
        self._check_stop(heartbeat)
        for ticket in tickets:
            if not experiment.is_run_done(level, ticket):
                experiment.train_run(level, ticket)

    def _complete_controls(
        self, experiment: Experiment, level: int, heartbeat: Heartbeat, *, wait: bool
    ) -> list[str]:
        """The level's unfinished controls: trained here unless held elsewhere (then waited
        for, or with ``wait=False`` returned)."""
        controls = [
            k for k in experiment.controls_of(level) if not experiment.is_run_done(level, k)
        ]
        return level_controls.complete(
            self.settings,
            experiment,
            self.experiment_id,
            level,
            controls,
            worker=self.worker,
            should_stop=lambda: self._should_stop(heartbeat),
            check_stop=lambda: self._check_stop(heartbeat),
            wait=wait,
        )

    def _engine(self, spec: ExperimentSpec, heartbeat: Heartbeat) -> Experiment:
        writer = database_progress(
            self.settings, self.experiment_id, levels=spec.pruning.levels + 1
        )
        experiment = build_experiment(
            self.settings,
            self.experiment_id,
            spec,
            device=self.device,
            progress=writer,
            should_stop=lambda: self._should_stop(heartbeat),
        )
        writer.plan = experiment  # for the ETA in the progress it writes
        return experiment

    def _record(self, level: int, summary: dict[str, Any]) -> None:
        """Commits a finished level (summary row and ticket level), if this copy still holds it.

        The check is a write (a heartbeat: ``UPDATE ... WHERE claim_token``), not a read, so
        the decision and the record are one transaction under the lease.
        """
        with session_scope(self.settings) as session:
            if not claims.heartbeat(session, self.experiment_id, self.token):
                raise LeaseLost()
            repo.record_level(session, self.experiment_id, level, summary)
        log.info("experiment %s: level %d recorded", self.experiment_id, level)

    def _hand_on(self, heartbeat: Heartbeat) -> Outcome:
        """Gives the lease up and sends the next level; a cancel at the boundary ends here."""
        self._check_stop(heartbeat)
        heartbeat.stop()  # as for success: the release ends the lease
        with session_scope(self.settings) as session:
            released = claims.release(session, self.experiment_id, self.token, level_finished=True)
        if not released:
            raise LeaseLost()
        try:
            self.send_next()
        except Exception:  # the reconciler re-sends an unclaimed experiment the queue lacks
            log.warning("could not send the next level of %s", self.experiment_id, exc_info=True)
        return Outcome.LEVEL_DONE


def _describe(exc: BaseException, settings: Settings) -> tuple[str, str]:
    """The error type and message shown to users; a soft time limit gets a clear name."""
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return (
            "TimeLimitExceeded",
            f"a level ran longer than LTH_TASK_TIME_LIMIT_SECONDS "
            f"({settings.task_time_limit_seconds:.0f} s)",
        )
    return type(exc).__name__, str(exc) or repr(exc)
