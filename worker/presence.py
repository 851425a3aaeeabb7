"""This worker's row in ``workers`` (store.workers): written at start and by every reconciler
pass, removed at a warm shutdown, so the API can tell which queues somebody consumes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from store import workers
from store.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Presence:
    """Says that worker ``node`` is alive and consumes ``queues``."""

    settings: Settings
    sessions: sessionmaker[Session]
    node: str
    queues: list[str]

    def beat(self) -> None:
        try:
            with self.sessions.begin() as session:
                workers.beat(
                    session,
                    self.node,
                    self.queues,
                    timeout_seconds=self.settings.heartbeat_timeout_seconds,
                )
        except Exception:  # the database is down: the reconciler's pass says so too
            log.warning("could not record this worker's queues; retrying", exc_info=True)

    def forget(self) -> None:
        try:
            with self.sessions.begin() as session:
                workers.forget(session, self.node)
        except Exception:
            log.warning("could not remove this worker's row", exc_info=True)


def consumed_queues(consumer: Any) -> list[str]:
    """The queues a Celery worker (the ``worker_ready`` signal's sender) consumes."""
    try:
        return sorted(consumer.app.amqp.queues.consume_from)
    except AttributeError:
        return []
