"""Which queues live workers consume: each worker's reconciler writes its row (``workers``),
the API reads them.

A worker beats at start and every reconciler pass (half the heartbeat timeout) and removes its
row on a warm shutdown; a row older than ``LTH_HEARTBEAT_TIMEOUT_SECONDS`` is a worker that
died without saying so, and counts for nothing (it is deleted by the next beat of any worker).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from store.models import WorkerPresence, utcnow

_W = WorkerPresence.__table__.c


def beat(session: Session, node: str, queues: list[str], *, timeout_seconds: float) -> None:
    """Records that ``node`` is alive and consumes ``queues``; forgets workers gone silent."""
    now = utcnow()
    session.execute(delete(WorkerPresence).where(_W.heartbeat_at < now - _ago(timeout_seconds)))
    row = session.get(WorkerPresence, node)
    if row is None:
        session.add(WorkerPresence(node=node, queues=sorted(set(queues)), heartbeat_at=now))
    else:
        row.queues = sorted(set(queues))
        row.heartbeat_at = now


def forget(session: Session, node: str) -> None:
    """Removes ``node`` (a worker shutting down)."""
    session.execute(delete(WorkerPresence).where(_W.node == node))


def consumers(connection: Connection | Session, *, timeout_seconds: float) -> dict[str, list[str]]:
    """Queue name -> the live workers consuming it (sorted)."""
    since = utcnow() - _ago(timeout_seconds)
    rows = connection.execute(select(_W.node, _W.queues).where(_W.heartbeat_at >= since))
    found: dict[str, list[str]] = {}
    for node, queues in rows:
        for queue in queues if isinstance(queues, list) else []:
            found.setdefault(str(queue), []).append(str(node))
    return {queue: sorted(nodes) for queue, nodes in sorted(found.items())}


def _ago(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
