"""Each worker's training counters (``worker_stats``), written by the worker, read by the
API's ``/metrics`` (see :class:`store.models.WorkerStats` for why through the database).

A worker adds the iterations it trained since its last write (``iterations + delta`` in SQL,
so the prefork children that run one task each add up in one row per worker node), at most
every heartbeat interval and when a task ends. Rows untouched for :data:`RETENTION` (workers
long gone: node names carry a process id) are deleted by the next write of any worker.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from store.models import WorkerStats, utcnow

#: How long a silent worker's counters stay visible (Prometheus sees its series end).
RETENTION = timedelta(days=1)

_S = WorkerStats.__table__.c


def record(session: Session, node: str, iterations: int, iterations_per_second: float) -> None:
    """Adds ``iterations`` to ``node``'s counter and sets its current speed."""
    now = utcnow()
    session.execute(delete(WorkerStats).where(_S.updated_at < now - RETENTION))
    updated = session.execute(
        update(WorkerStats)
        .where(_S.node == node)
        .values(
            iterations=_S.iterations + int(iterations),
            iterations_per_second=float(iterations_per_second),
            updated_at=now,
        )
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(
            WorkerStats(
                node=node,
                iterations=int(iterations),
                iterations_per_second=float(iterations_per_second),
                updated_at=now,
            )
        )
