"""The body of one task: claim an experiment, run its next unfinished level, record, hand on.

One task runs one level, not a whole experiment, for three reasons: the broker's visibility
timeout and the task time limit only have to cover the longest level; a fresh worker child per
level returns GPU memory; and experiments sharing a pool of workers take turns level by level
instead of the first one monopolizing a GPU for days. At the end of a level the task gives the
claim up and sends the next level's message itself; the reconciler covers a lost hand-off.

Resuming is the engine's job: it skips every run that has a metrics file, so a level that was
interrupted restarts at its first unfinished run and produces exactly what an uninterrupted
run would have.

Controls run in parallel when other workers are free. Once the level's mask is on disk, the
task registers a claimable row per unfinished control run (store.run_claims) and offers each
to the other workers as a ``lth.run_control`` message (a Celery group), then trains the
ticket, which the next level needs. Then it trains every control nobody has claimed (work
stealing: a worker alone finishes everything, and a lost message costs nothing), and waits,
polling the database, for controls that live workers elsewhere are training, taking over any
whose heartbeat goes stale. Only this task, the holder of the experiment, records the level.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lth_core.spec import ExperimentSpec
from store import claims, run_claims
from store import experiments as repo
from store.db import session_scope
from store.models import Level as LevelRow
from store.models import Status
from store.settings import Settings
from worker.controls import ControlOutcome, ControlRun, default_worker_name
from worker.engine import build_experiment, load_spec
from worker.heartbeat import Heartbeat
from worker.progress import ProgressWriter

if TYPE_CHECKING:
    from lth_core.experiment import Experiment

log = logging.getLogger(__name__)

#: Claims in a row without finishing a level before the experiment is failed. A level that
#: kills its worker (segfault, out-of-memory kill, hard time limit) would otherwise loop.
MAX_ATTEMPTS = 3

#: Seconds between progress writes (evaluations in between only update the metrics shown).
PROGRESS_INTERVAL_SECONDS = 0.5


class Outcome(StrEnum):
    """What one task did; the task returns it (useful in logs and tests)."""

    LEVEL_DONE = "level_done"  # a level finished and the next one was sent
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DUPLICATE = "duplicate"  # a live claim is held by another copy: nothing run
    NOTHING = "nothing"  # finished or deleted already
    LOST = "lost"  # the claim was taken over while this copy ran: it stopped


class _ClaimLost(Exception):
    """The heartbeat found another holder: stop without writing any status."""


def _offer_nowhere(level: int, kinds: list[str]) -> None:
    """No other workers to offer controls to (in-process use): this task trains them all."""


def control_poll_seconds(settings: Settings) -> float:
    """How often a level waiting on controls elsewhere looks again (and checks for cancel)."""
    return max(0.1, min(0.5, settings.heartbeat_seconds / 2))


@dataclass
class LevelRunner:
    """Runs the next level of one experiment; ``send_next`` asks for the level after it.

    ``send_controls(level, kinds)`` offers control runs to other workers; ``worker`` is this
    worker's name, recorded with every control run it trains.
    """

    settings: Settings
    experiment_id: str
    send_next: Callable[[], None]
    send_controls: Callable[[int, list[str]], None] = _offer_nowhere
    worker: str = field(default_factory=default_worker_name)
    device: str = "auto"
    max_attempts: int = MAX_ATTEMPTS
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    # ----------------------------------------------------------------- entry

    def run(self) -> Outcome:
        with session_scope(self.settings) as session:
            claimed = claims.claim(
                session,
                self.experiment_id,
                self.token,
                timeout_seconds=self.settings.heartbeat_timeout_seconds,
                max_attempts=self.max_attempts,
            )
        if claimed is not claims.ClaimOutcome.CLAIMED:
            return self._not_claimed(claimed)
        log.info("experiment %s: claimed (token %s)", self.experiment_id, self.token[:8])
        heartbeat = Heartbeat(
            self._beat, self.settings.heartbeat_seconds, name=f"claim {self.experiment_id}"
        )
        with heartbeat:
            try:
                return self._run_claimed(heartbeat)
            except Exception as exc:
                return self._stopped_by(exc, heartbeat)

    # ----------------------------------------------------------------- claim

    def _beat(self) -> bool:
        with session_scope(self.settings) as session:
            return claims.heartbeat(session, self.experiment_id, self.token)

    def _should_stop(self, heartbeat: Heartbeat) -> bool:
        """Checked by the engine at every evaluation: lost claim, or the API's cancel flag."""
        if heartbeat.lost:
            return True
        try:
            with session_scope(self.settings) as session:
                return claims.cancel_requested(session, self.experiment_id)
        except Exception:
            log.warning("could not read the cancel flag; continuing", exc_info=True)
            return False

    def _not_claimed(self, claimed: claims.ClaimOutcome) -> Outcome:
        log.info("experiment %s: not claimed (%s)", self.experiment_id, claimed)
        timeout = self.settings.heartbeat_timeout_seconds
        if claimed is claims.ClaimOutcome.HELD:
            return Outcome.DUPLICATE
        if claimed is claims.ClaimOutcome.CANCEL_REQUESTED:
            with session_scope(self.settings) as session:
                claims.finish_unclaimed(
                    session, self.experiment_id, Status.CANCELLED, timeout_seconds=timeout
                )
            return Outcome.CANCELLED
        if claimed is claims.ClaimOutcome.EXHAUSTED:
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

    def _stopped_by(self, exc: Exception, heartbeat: Heartbeat) -> Outcome:
        from lth_core.experiment import Cancelled

        if heartbeat.lost or isinstance(exc, _ClaimLost):
            log.warning("experiment %s: claim lost; stopped without recording", self.experiment_id)
            return Outcome.LOST
        with session_scope(self.settings) as session:
            if isinstance(exc, Cancelled):
                repo.mark_cancelled(session, self.experiment_id, claim_token=self.token)
                log.info("experiment %s: cancelled", self.experiment_id)
                return Outcome.CANCELLED
            error_type, message = _describe(exc, self.settings)
            log.exception("experiment %s failed", self.experiment_id, exc_info=exc)
            repo.mark_failed(
                session, self.experiment_id, error_type, message, claim_token=self.token
            )
        return Outcome.FAILED

    # ----------------------------------------------------------------- work

    def _run_claimed(self, heartbeat: Heartbeat) -> Outcome:
        spec = load_spec(self.settings, self.experiment_id)
        experiment = self._engine(spec, heartbeat)
        self._settle(experiment, spec)
        pending = experiment.pending()
        if pending:
            level = pending[0][0]
            log.info("experiment %s: level %d, runs %s", self.experiment_id, level, pending)
            experiment.prepare_level(level)
            if experiment.stacks_level(level):
                # Ticket and controls train as one stacked model here (the spec's
                # training.stack_runs and lth_core.stacked.should_stack): nothing to offer.
                self._check_stop(heartbeat)
                experiment.train_runs(level)
            else:
                controls = [k for run_level, k in pending if run_level == level and k != "ticket"]
                self._offer_controls(level, controls)
                if not experiment.is_run_done(level, "ticket"):
                    self._check_stop(heartbeat)
                    experiment.train_run(level, "ticket")
                self._complete_controls(experiment, level, controls, heartbeat)
            self._record(experiment, spec, level, experiment.finish_level(level))
            if experiment.pending():
                return self._hand_on(heartbeat)
        heartbeat.stop()  # the claim ends here; a beat after it must not report it lost
        with session_scope(self.settings) as session:
            if not repo.mark_succeeded(session, self.experiment_id, claim_token=self.token):
                raise _ClaimLost()
        log.info("experiment %s: succeeded", self.experiment_id)
        return Outcome.SUCCEEDED

    def _engine(self, spec: ExperimentSpec, heartbeat: Heartbeat) -> Experiment:
        writer = ProgressWriter(
            self._write_progress,
            levels=spec.pruning.levels + 1,
            min_interval=PROGRESS_INTERVAL_SECONDS,
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

    # ----------------------------------------------------------------- controls

    def _offer_controls(self, level: int, controls: list[str]) -> None:
        """Registers the level's unfinished controls and offers the unclaimed ones elsewhere.

        The rows are committed before any message is sent, so a worker that gets a message
        finds its row; sending is best effort (this task trains whatever nobody takes).
        """
        if not controls:
            return
        with session_scope(self.settings) as session:
            run_claims.register(session, self.experiment_id, level, controls)
            offered = run_claims.unheld(
                session,
                self.experiment_id,
                level,
                controls,
                timeout_seconds=self.settings.heartbeat_timeout_seconds,
            )
        if not offered:
            return
        try:
            self.send_controls(level, offered)
        except Exception:
            log.warning(
                "could not offer the controls of %s; running them here",
                self.experiment_id,
                exc_info=True,
            )

    def _complete_controls(
        self, experiment: Experiment, level: int, controls: list[str], heartbeat: Heartbeat
    ) -> None:
        """Trains every control nobody else holds; waits for those live elsewhere.

        Never waits on an unclaimed run (it takes it), so one worker alone cannot deadlock;
        a holder elsewhere that dies is taken over once its heartbeat is stale; cancellation
        and a lost experiment claim are checked on every pass.
        """
        poll = control_poll_seconds(self.settings)
        should_stop = functools.partial(self._should_stop, heartbeat)
        waiting = list(controls)
        while waiting:
            still = []
            for kind in waiting:
                self._check_stop(heartbeat)
                control = ControlRun(
                    self.settings, self.experiment_id, level, kind, worker=self.worker
                )
                if control.run_here(experiment, should_stop) is ControlOutcome.WAITING:
                    still.append(kind)
            waiting = still
            if waiting:
                self._check_stop(heartbeat)
                time.sleep(poll)
        # Every control of the level, not only this task's: a predecessor may have died
        # between a run's file appearing and its row being marked finished.
        every = [k for k in experiment.runs_at_level(level) if k != "ticket"]
        if every:
            with session_scope(self.settings) as session:
                run_claims.settle(session, self.experiment_id, level, every)

    def _settle(self, experiment: Experiment, spec: ExperimentSpec) -> None:
        """Records what a crashed predecessor left between the engine and the database.

        A level whose summary is on disk but whose row is missing (a crash between the two
        writes) is recorded; a level whose runs all finished but has no summary (a crash just
        before it) is finished. Recording is idempotent, so redoing either is harmless.
        """
        with session_scope(self.settings) as session:
            recorded = set(
                session.scalars(
                    select(LevelRow.level).where(LevelRow.experiment_id == self.experiment_id)
                )
            )
        for level in experiment.levels:
            if experiment.is_level_done(level):
                if level not in recorded:
                    self._record(experiment, spec, level, _read_summary(experiment, level))
                continue
            if all(experiment.is_run_done(level, k) for k in experiment.runs_at_level(level)):
                self._record(experiment, spec, level, experiment.finish_level(level))
                continue
            return

    def _record(
        self, experiment: Experiment, spec: ExperimentSpec, level: int, summary: dict[str, Any]
    ) -> None:
        """Commits a finished level (summary row and ticket level), if this copy still holds it.

        The check is a write (a heartbeat: ``UPDATE ... WHERE claim_token``), not a read: on
        SQLite a transaction that reads first and writes second fails at once with "database
        is locked" when another connection (a heartbeat thread, a control worker) wrote in
        between, whereas one that writes first waits for the lock like any writer.
        """
        with session_scope(self.settings) as session:
            if not claims.heartbeat(session, self.experiment_id, self.token):
                raise _ClaimLost()
            repo.record_level(session, self.experiment_id, level, summary)
        log.info("experiment %s: level %d recorded", self.experiment_id, level)

    def _check_stop(self, heartbeat: Heartbeat) -> None:
        from lth_core.experiment import Cancelled

        if self._should_stop(heartbeat):
            raise Cancelled()

    def _hand_on(self, heartbeat: Heartbeat) -> Outcome:
        """Gives the claim up and sends the next level; a cancel at the boundary ends here."""
        self._check_stop(heartbeat)
        heartbeat.stop()  # as for success: the release ends the claim
        with session_scope(self.settings) as session:
            released = claims.release(session, self.experiment_id, self.token, level_finished=True)
        if not released:
            raise _ClaimLost()
        try:
            self.send_next()
        except Exception:  # the reconciler re-sends an unclaimed experiment the queue lacks
            log.warning("could not send the next level of %s", self.experiment_id, exc_info=True)
        return Outcome.LEVEL_DONE

    def _write_progress(self, progress: dict[str, Any]) -> None:
        with session_scope(self.settings) as session:
            repo.record_progress(session, self.experiment_id, progress)


def _read_summary(experiment: Experiment, level: int) -> dict[str, Any]:
    from lth_core.artifacts import load_json

    return load_json(experiment.layout.summary(level))


def _describe(exc: BaseException, settings: Settings) -> tuple[str, str]:
    """The error type and message shown to users; a soft time limit gets a clear name."""
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return (
            "TimeLimitExceeded",
            f"a level ran longer than LTH_TASK_TIME_LIMIT_SECONDS "
            f"({settings.task_time_limit_seconds:.0f} s)",
        )
    return type(exc).__name__, str(exc) or repr(exc)
