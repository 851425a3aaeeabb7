"""One control run under its lease: claim it, train it with a heartbeat, publish, record.

Used in two places with the same rules: by a ``lth.run_control`` task on whichever worker got
the offer (:mod:`worker.control.offered`), and by the level's holder, which trains every
control nobody has claimed (so one worker alone finishes everything) and takes over any whose
holder stopped heart-beating (:mod:`worker.level.controls`). The claim (store.run_claims)
guarantees that a run is trained by one process at a time; staging (worker.control.staging)
that two processes never write its file.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from store import run_claims
from store.db import session_scope
from store.lease import LeaseOutcome
from store.settings import Settings
from worker.control.staging import publish, train_staged
from worker.heartbeat import Heartbeat, LeaseLost, held

if TYPE_CHECKING:
    from collections.abc import Callable

    from lth_core.experiment import Experiment

log = logging.getLogger(__name__)


class ControlOutcome(StrEnum):
    """What an attempt at one control run did (a ``lth.run_control`` task returns it)."""

    RAN = "ran"  # trained here, published and recorded
    DONE = "done"  # finished already (here or elsewhere): nothing to do
    WAITING = "waiting"  # another live worker is training it
    NOT_READY = "not_ready"  # its level is not prepared yet, or finished, or the row is missing
    NOTHING = "nothing"  # the experiment is finished, cancelled or deleted
    STOPPED = "stopped"  # cancelled (or the experiment ended) while training; run given back
    LOST = "lost"  # the claim was taken over while training: stopped without publishing
    FAILED = "failed"  # the engine raised; the run was given back with the error


def default_worker_name() -> str:
    """Who trained a run when no Celery node name is at hand (in-process use, tests)."""
    return socket.gethostname()


@dataclass
class ControlRun:
    """The control run ``kind`` of ``level``, attempted by one process under one token."""

    settings: Settings
    experiment_id: str
    level: int
    kind: str
    worker: str = field(default_factory=default_worker_name)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    # ----------------------------------------------------------------- claim

    def claim(self) -> LeaseOutcome:
        with session_scope(self.settings) as session:
            return run_claims.claim(
                session,
                self.experiment_id,
                self.level,
                self.kind,
                self.token,
                worker=self.worker,
                pid=os.getpid(),
                timeout_seconds=self.settings.heartbeat_timeout_seconds,
            )

    def _beat(self) -> bool:
        with session_scope(self.settings) as session:
            return run_claims.heartbeat(
                session, self.experiment_id, self.level, self.kind, self.token
            )

    def _holds(self) -> bool:
        with session_scope(self.settings, read_only=True) as session:
            return run_claims.holds(session, self.experiment_id, self.level, self.kind, self.token)

    def _finish(self, seconds: float | None) -> None:
        with session_scope(self.settings) as session:
            run_claims.finish(
                session, self.experiment_id, self.level, self.kind, self.token, seconds=seconds
            )

    def _release(self, exc: BaseException) -> None:
        """Gives the run up so that the level's holder (or anyone) can take it at once."""
        from lth_core.experiment import Cancelled

        error = None if isinstance(exc, Cancelled) else f"{type(exc).__name__}: {exc}"[:2000]
        try:
            with session_scope(self.settings) as session:
                run_claims.release(
                    session, self.experiment_id, self.level, self.kind, self.token, error=error
                )
        except Exception:  # the claim then expires after the heartbeat timeout instead
            log.warning(
                "could not release run %s/%d/%s",
                self.experiment_id,
                self.level,
                self.kind,
                exc_info=True,
            )

    @contextmanager
    def held(self) -> Iterator[Heartbeat]:
        """While the claim is held: heart-beats it; on any exception gives the run back and
        re-raises, except that a claim found taken over becomes :class:`LeaseLost`."""
        with held(
            self._beat,
            self.settings.heartbeat_seconds,
            name=f"run claim {self.experiment_id}/{self.level}/{self.kind}",
            on_error=self._release,
        ) as heartbeat:
            yield heartbeat

    # ----------------------------------------------------------------- work

    def train(
        self, experiment: Experiment, heartbeat: Heartbeat, should_stop: Callable[[], bool]
    ) -> None:
        """Trains the run (inside :meth:`held`), then publishes and records it if still held.

        ``should_stop`` is the caller's reason to stop (cancel, experiment claim lost); a lost
        run claim is added to it, so the engine stops at the next evaluation either way.
        """
        started = time.monotonic()
        staged = train_staged(
            experiment,
            self.level,
            self.kind,
            self.token,
            should_stop=lambda: heartbeat.lost or should_stop(),
        )
        if heartbeat.lost or not self._holds():
            experiment.store.delete(staged)
            raise LeaseLost()
        publish(experiment.store, staged, self.level, self.kind)
        heartbeat.stop()  # finishing drops the claim: no beat may find it gone and cry "lost"
        self._finish(time.monotonic() - started)
        log.info(
            "experiment %s: level %d %s trained by %s in %.1f s",
            self.experiment_id,
            self.level,
            self.kind,
            self.worker,
            time.monotonic() - started,
        )

    def run_here(self, experiment: Experiment, should_stop: Callable[[], bool]) -> ControlOutcome:
        """For the level's holder: trains the run unless it is done or live elsewhere.

        Exceptions other than a lost run claim propagate (after the run is given back), so the
        level task fails or stops the experiment as for its own runs.
        """
        if experiment.is_run_done(self.level, self.kind):
            return ControlOutcome.DONE
        claimed = self.claim()
        if claimed is LeaseOutcome.FINISHED:
            self._reopen_if_file_missing(experiment)
            return ControlOutcome.WAITING
        if claimed is LeaseOutcome.MISSING:
            with session_scope(self.settings) as session:
                run_claims.register(session, self.experiment_id, self.level, [self.kind])
            return ControlOutcome.WAITING
        if claimed is LeaseOutcome.HELD:
            return ControlOutcome.WAITING
        try:
            with self.held() as heartbeat:
                if experiment.is_run_done(self.level, self.kind):  # published, then died
                    self._finish(None)
                    return ControlOutcome.DONE
                self.train(experiment, heartbeat, should_stop)
        except LeaseLost:
            log.warning(
                "experiment %s: level %d %s taken over; waiting for it",
                self.experiment_id,
                self.level,
                self.kind,
            )
            return ControlOutcome.WAITING
        return ControlOutcome.RAN

    def _reopen_if_file_missing(self, experiment: Experiment) -> None:
        """A run recorded as finished has no file here (yet): give a shared file system a
        heartbeat timeout to show it, then make it claimable again."""
        if experiment.is_run_done(self.level, self.kind):
            return
        with session_scope(self.settings) as session:
            reopened = run_claims.reopen(
                session,
                self.experiment_id,
                self.level,
                self.kind,
                older_than_seconds=self.settings.heartbeat_timeout_seconds,
            )
        if reopened:
            log.warning(
                "experiment %s: level %d %s recorded but its file is missing; running it again",
                self.experiment_id,
                self.level,
                self.kind,
            )
