"""The experiment's lease as the level task holds it: claim, heartbeat, stop, record, let go.

Every write the level task makes to the experiment's row is here, and each one goes through
the lease token (``claim_token``), so a copy that lost the lease (presumed dead and taken over
while it ran) can never record a level or a final status. Keeping those writes in one class
makes that rule one place to read; what the level does while holding the lease is
:mod:`worker.level.task`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from store import claims
from store import experiments as repo
from store.db import session_scope
from store.lease import LeaseOutcome
from store.models import Status
from store.scrub import without_server_paths
from store.settings import Settings
from worker.heartbeat import Heartbeat, LeaseLost, held

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
class ExperimentLease:
    """One task's claim on an experiment, under ``token``; ``queue`` is stored with the
    experiment if it names none yet."""

    settings: Settings
    experiment_id: str
    max_attempts: int = MAX_ATTEMPTS
    queue: str | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    # ----------------------------------------------------------------- taking it

    def claim(self) -> LeaseOutcome:
        with session_scope(self.settings) as session:
            return claims.claim(
                session,
                self.experiment_id,
                self.token,
                timeout_seconds=self.settings.heartbeat_timeout_seconds,
                max_attempts=self.max_attempts,
                queue=self.queue,
            )

    def not_claimed(self, claimed: LeaseOutcome) -> Outcome:
        """Settles an experiment nobody may run any more (cancelled, or lost too often)."""
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

    # ----------------------------------------------------------------- holding it

    @contextmanager
    def held(self) -> Iterator[Heartbeat]:
        """While the claim is held: heart-beats it; a level stopped by an exception gets its
        final status written under the lease (see :func:`worker.heartbeat.held`)."""
        with held(
            self._beat,
            self.settings.heartbeat_seconds,
            name=f"claim {self.experiment_id}",
            on_error=self._record_failure,
        ) as heartbeat:
            yield heartbeat

    def _beat(self) -> bool:
        with session_scope(self.settings) as session:
            return claims.heartbeat(session, self.experiment_id, self.token)

    def should_stop(self, heartbeat: Heartbeat) -> bool:
        """Checked by the engine at every evaluation: lost claim, or the API's cancel flag."""
        if heartbeat.lost:
            return True
        try:
            with session_scope(self.settings, read_only=True) as session:
                return claims.cancel_requested(session, self.experiment_id)
        except Exception:
            log.warning("could not read the cancel flag; continuing", exc_info=True)
            return False

    def check_stop(self, heartbeat: Heartbeat) -> None:
        from lth_core.experiment import Cancelled

        if self.should_stop(heartbeat):
            raise Cancelled()

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

    def record(self, level: int, summary: dict[str, Any]) -> None:
        """Commits a finished level (summary row and ticket level), if this copy still holds it.

        The check is a write (a heartbeat: ``UPDATE ... WHERE claim_token``), not a read, so
        the decision and the record are one transaction under the lease.
        """
        with session_scope(self.settings) as session:
            if not claims.heartbeat(session, self.experiment_id, self.token):
                raise LeaseLost()
            repo.record_level(session, self.experiment_id, level, summary)
        log.info("experiment %s: level %d recorded", self.experiment_id, level)

    # ----------------------------------------------------------------- letting go

    def hand_on(self, heartbeat: Heartbeat, send_next: Callable[[], None]) -> Outcome:
        """Gives the lease up and sends the next level; a cancel at the boundary ends here."""
        self.check_stop(heartbeat)
        heartbeat.stop()  # as for success: the release ends the lease
        with session_scope(self.settings) as session:
            released = claims.release(session, self.experiment_id, self.token, level_finished=True)
        if not released:
            raise LeaseLost()
        try:
            send_next()
        except Exception:  # the reconciler re-sends an unclaimed experiment the queue lacks
            log.warning("could not send the next level of %s", self.experiment_id, exc_info=True)
        return Outcome.LEVEL_DONE

    def succeed(self, heartbeat: Heartbeat) -> Outcome:
        """Marks the experiment succeeded, which also ends the lease."""
        heartbeat.stop()  # the lease ends here; a beat after it must not report it lost
        with session_scope(self.settings) as session:
            if not repo.mark_succeeded(session, self.experiment_id, claim_token=self.token):
                raise LeaseLost()
        log.info("experiment %s: succeeded", self.experiment_id)
        return Outcome.SUCCEEDED


def stopped_outcome(experiment_id: str, exc: Exception) -> Outcome:
    """What a level stopped by ``exc`` returns (its status was written by ``held``)."""
    from lth_core.experiment import Cancelled

    if isinstance(exc, Cancelled):
        log.info("experiment %s: cancelled", experiment_id)
        return Outcome.CANCELLED
    return Outcome.FAILED


def _describe(exc: BaseException, settings: Settings) -> tuple[str, str]:
    """The error type and message shown to users; a soft time limit gets a clear name."""
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return (
            "TimeLimitExceeded",
            f"a level ran longer than LTH_TASK_TIME_LIMIT_SECONDS "
            f"({settings.task_time_limit_seconds:.0f} s)",
        )
    return type(exc).__name__, without_server_paths(str(exc) or repr(exc), settings)
