"""Re-sends work the broker lost: the database, not the broker, is the system of record.

Redis here keeps nothing on disk, and both transports drop the message a dead worker was
working on (Redis only re-delivers it after the visibility timeout, hours later). So every
worker runs this loop, at start and then periodically:

1. A claim whose holder stopped heart-beating is cleared (compare-and-set, so of several
   reconcilers only one wins) and the experiment is sent again; the next worker resumes it.
2. An experiment cancelled while nobody held it is marked cancelled.
3. Unclaimed active experiments (queued, or running between levels) should each have a message
   waiting. Each is decided on its own: one whose last send (``heartbeat_at`` of an unclaimed
   row, else its creation) is older than the grace and whose message is not in the queues
   (:func:`store.broker.pending_experiments` reads them) was lost (a flushed or restarted
   Redis) and is sent again. Stale messages of finished or cancelled experiments cannot hide a
   lost one, as they did when the queues' depth was compared with the number of waiting
   experiments; a duplicate that does slip through finds the claim taken or the level done.

Every re-send goes to the queue stored with the experiment (``experiments.queue``: ``lth.gpu``,
``lth.cpu`` or a custom one), so a lost message never moves work to a kind of worker it was
not meant for; and the queues counted are the standard ones plus every stored one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from store import claims
from store.broker import ALL_QUEUES, DEFAULT_QUEUE
from store.models import ACTIVE_STATUSES, Experiment
from store.settings import Settings

if TYPE_CHECKING:
    from worker.presence import Presence

log = logging.getLogger(__name__)

#: Embedded broker: processed message files older than this are deleted.
PROCESSED_RETENTION_SECONDS = 24 * 3600.0


@dataclass
class Report:
    """What one pass did (ids per action)."""

    taken_over: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.taken_over or self.cancelled or self.resent)


class Reconciler:
    """One reconciliation policy over a database, a sender and a queue-depth probe.

    ``send(experiment_id, queue)`` publishes one message to ``queue``; ``pending(queues)``
    names the experiments whose run message waits in ``queues``.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        send: Callable[[str, str], None],
        pending: Callable[[tuple[str, ...]], set[str]],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.send = send
        self.pending = pending

    @property
    def interval(self) -> float:
        """Half the heartbeat timeout: a dead holder is noticed within 1.5 timeouts."""
        return max(0.2, self.settings.heartbeat_timeout_seconds / 2)

    def reconcile_once(self) -> Report:
        report = Report()
        timeout = self.settings.heartbeat_timeout_seconds
        with self.sessions.begin() as session:
            report.taken_over = claims.take_over_dead(session, timeout_seconds=timeout)
        for experiment_id in report.taken_over:
            self._send(experiment_id, report.resent)
        with self.sessions.begin() as session:
            report.cancelled = claims.cancel_unclaimed(session)
        with self.sessions.begin() as session:
            overdue = claims.waiting(session, grace_seconds=timeout)
            queues = self._queues(session)
        overdue = [i for i in overdue if i not in report.resent]
        if overdue:
            waiting = self.pending(queues)
            for experiment_id in (i for i in overdue if i not in waiting):
                with self.sessions.begin() as session:
                    still_waiting = claims.touch_waiting(session, experiment_id)
                if still_waiting:
                    self._send(experiment_id, report.resent)
        if report:
            log.warning(
                "reconciler: took over %s, cancelled %s, re-sent %s",
                report.taken_over,
                report.cancelled,
                report.resent,
            )
        return report

    @staticmethod
    def _queues(session: Session) -> tuple[str, ...]:
        """The standard queues and every queue an active experiment was sent to."""
        stored = session.scalars(
            select(Experiment.queue)
            .where(Experiment.status.in_(ACTIVE_STATUSES), Experiment.queue.is_not(None))
            .distinct()
        ).all()
        return tuple(dict.fromkeys([*ALL_QUEUES, *stored]))

    def _send(self, experiment_id: str, sent: list[str]) -> None:
        try:
            with self.sessions.begin() as session:
                queue = claims.queue_of(session, experiment_id) or DEFAULT_QUEUE
            self.send(experiment_id, queue)
        except Exception:
            log.warning("reconciler could not send %s; will retry", experiment_id, exc_info=True)
            return
        sent.append(experiment_id)

    def prune_processed(self) -> None:
        """Deletes old message files of the embedded broker (kept only to make takes atomic)."""
        from store.broker import broker_dir, is_embedded

        if not is_embedded(self.settings):
            return
        cutoff = time.time() - PROCESSED_RETENTION_SECONDS
        for path in (broker_dir(self.settings) / "processed").glob("*.msg"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass


class ReconcilerThread:
    """Runs a Reconciler in a daemon thread of the worker's main process until stopped."""

    def __init__(
        self, reconciler: Reconciler, engine: Engine | None = None, presence: Presence | None = None
    ) -> None:
        self.reconciler = reconciler
        self.presence = presence
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lth-reconciler", daemon=True)

    def start(self) -> ReconcilerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.presence is not None:
            self.presence.forget()
        if self._engine is not None:
            self._engine.dispose()

    def _loop(self) -> None:
        while True:
            if self.presence is not None:
                self.presence.beat()
            try:
                self.reconciler.reconcile_once()
                self.reconciler.prune_processed()
            except Exception:  # database or broker down: try again next interval
                log.warning("reconciler pass failed; retrying", exc_info=True)
            if self._stop.wait(self.reconciler.interval):
                return
