"""What the API's ``/metrics`` reads from the database at each scrape: one short read
transaction, a handful of aggregate queries (no experiment ids, names or owners: the series
carry only statuses, queue names and worker node names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, func, select

from store import workers
from store.broker import DEFAULT_QUEUE
from store.models import Experiment, RunClaim, WorkerStats, utcnow
from store.status import STATUS_VALUES, Status


@dataclass
class MetricsSnapshot:
    """The service's own numbers at one instant (see service.metrics for their series)."""

    experiments: dict[str, int]  # status -> experiments
    queued: dict[str, int]  # queue -> experiments waiting for their first worker
    oldest_queued_seconds: dict[str, float]  # queue -> age of its oldest queued experiment
    runs_in_flight: dict[str, int]  # "level" (an experiment's holder) / "control" -> live ones
    oldest_heartbeat_seconds: float  # age of the stalest live claim's heartbeat; 0 if none
    consumers: dict[str, int]  # queue -> live workers consuming it
    iterations: dict[str, int] = field(default_factory=dict)  # worker -> iterations trained
    iterations_per_second: dict[str, float] = field(default_factory=dict)  # live workers only


def read_snapshot(connection: Connection, *, heartbeat_timeout_seconds: float) -> MetricsSnapshot:
    """Everything at once, from ``connection`` (a read-only one)."""
    now = utcnow()
    e = Experiment.__table__.c
    by_status = dict.fromkeys(STATUS_VALUES, 0)
    for status, count in connection.execute(select(e.status, func.count()).group_by(e.status)):
        by_status[str(status)] = int(count)
    queued: dict[str, int] = {}
    oldest: dict[str, float] = {}
    rows = connection.execute(
        select(e.queue, func.count(), func.min(e.created_at))
        .where(e.status == Status.QUEUED)
        .group_by(e.queue)
    )
    for queue, count, first in rows:
        name = str(queue or DEFAULT_QUEUE)
        queued[name] = queued.get(name, 0) + int(count)
        age = _age(now, first)
        oldest[name] = max(oldest.get(name, 0.0), age)
    holders = _heartbeats(connection, select(e.heartbeat_at).where(e.status == Status.RUNNING), now)
    c = RunClaim.__table__.c
    claims = _heartbeats(
        connection,
        select(c.heartbeat_at).where(c.claim_token.is_not(None), c.finished_at.is_(None)),
        now,
    )
    consumers = workers.consumers(connection, timeout_seconds=heartbeat_timeout_seconds)
    snapshot = MetricsSnapshot(
        experiments=by_status,
        queued=queued,
        oldest_queued_seconds=oldest,
        runs_in_flight={
            "level": sum(a <= heartbeat_timeout_seconds for a in holders),
            "control": sum(a <= heartbeat_timeout_seconds for a in claims),
        },
        # Every running claim, live or not: a stalled one is what this series is for.
        oldest_heartbeat_seconds=max((*holders, *claims), default=0.0),
        consumers={queue: len(nodes) for queue, nodes in consumers.items()},
    )
    s = WorkerStats.__table__.c
    for node, iterations, rate, updated in connection.execute(
        select(s.node, s.iterations, s.iterations_per_second, s.updated_at)
    ):
        snapshot.iterations[str(node)] = int(iterations or 0)
        if _age(now, updated) <= heartbeat_timeout_seconds:
            snapshot.iterations_per_second[str(node)] = float(rate or 0.0)
    return snapshot


def _heartbeats(connection: Connection, query: object, now: datetime) -> list[float]:
    """Ages in seconds of the heartbeats ``query`` selects (a claim never beaten: 0)."""
    return [_age(now, at) for (at,) in connection.execute(query)]  # type: ignore[call-overload]


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0
