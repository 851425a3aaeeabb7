"""The control runs' lease: who trains one control run of a level (:mod:`store.lease` over the
``run_claims`` table, declared in store.models with the other tables).

The controls of a level (random_reinit, random_prune) depend only on the level's mask, so they
may run on other workers while the worker holding the experiment trains the ticket. Each such
run gets a row, and whoever trains it first leases the row; of two workers exactly one trains a
run, and a holder whose heartbeat went stale may be taken over by anyone (the worker holding
the experiment does so while it waits). What is particular to this table: rows are registered
by the level's holder, a claim records who trained the run (``worker``, ``pid``, ``attempts``),
and a finished run stays finished (``finished_at``) unless its file goes missing.

Like store.claims, every function takes the caller's Session and the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store import lease
from store.lease import LeaseOutcome
from store.models import RunClaim, utcnow


def of(experiment_id: str, level: int, kind: str) -> lease.Lease:
    """The lease of one control run's row."""
    return lease.Lease(
        RunClaim,
        (
            RunClaim.experiment_id == experiment_id,
            RunClaim.level == level,
            RunClaim.kind == kind,
        ),
    )


def register(
    session: Session,
    experiment_id: str,
    level: int,
    kinds: Iterable[str],
    now: datetime | None = None,
) -> None:
    """Creates the rows of a level's control runs; rows that exist are left as they are.

    Called by the holder of the experiment once the level's mask is on disk, and before any
    message about these runs is sent, so a worker that gets such a message finds its row.
    """
    now = now or utcnow()
    rows = [
        {
            "experiment_id": experiment_id,
            "level": level,
            "kind": kind,
            "attempts": 0,
            "created_at": now,
        }
        for kind in kinds
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite if dialect == "sqlite" else postgresql).insert(RunClaim).values(rows)
        session.execute(
            insert.on_conflict_do_nothing(index_elements=["experiment_id", "level", "kind"])
        )
        return
    # Other dialects: portable but racier (a concurrent insert fails the caller's transaction).
    existing = set(  # pragma: no cover
        session.scalars(
            select(RunClaim.kind).where(
                RunClaim.experiment_id == experiment_id, RunClaim.level == level
            )
        )
    )
    session.add_all([RunClaim(**r) for r in rows if r["kind"] not in existing])
    session.flush()


def unheld(
    session: Session,
    experiment_id: str,
    level: int,
    kinds: Sequence[str],
    *,
    timeout_seconds: float,
    now: datetime | None = None,
) -> list[str]:
    """The kinds among ``kinds`` that nobody live is training and that are not finished."""
    now = now or utcnow()
    found = set(
        session.scalars(
            select(RunClaim.kind).where(
                RunClaim.experiment_id == experiment_id,
                RunClaim.level == level,
                RunClaim.kind.in_(list(kinds)),
                RunClaim.finished_at.is_(None),
                lease.free(RunClaim, now, timeout_seconds),
            )
        )
    )
    return [k for k in kinds if k in found]


def claim(
    session: Session,
    experiment_id: str,
    level: int,
    kind: str,
    token: str,
    *,
    worker: str,
    pid: int,
    timeout_seconds: float,
    now: datetime | None = None,
) -> LeaseOutcome:
    """Takes the run for ``token`` if it is unfinished and nobody live holds it."""
    now = now or utcnow()
    won = lease.claim(
        session,
        of(experiment_id, level, kind),
        token,
        timeout_seconds=timeout_seconds,
        conditions=(RunClaim.finished_at.is_(None),),
        values={
            "worker": worker,
            "pid": pid,
            "attempts": RunClaim.attempts + 1,
            "started_at": now,
            "error": None,
        },
        now=now,
    )
    if won:
        return LeaseOutcome.CLAIMED
    row = session.execute(
        select(RunClaim.finished_at).where(*of(experiment_id, level, kind).key)
    ).one_or_none()
    if row is None:
        return LeaseOutcome.MISSING
    return LeaseOutcome.FINISHED if row.finished_at is not None else LeaseOutcome.HELD


def heartbeat(
    session: Session,
    experiment_id: str,
    level: int,
    kind: str,
    token: str,
    now: datetime | None = None,
) -> bool:
    """Refreshes the claim; False means the caller no longer holds it and must stop."""
    return lease.beat(session, of(experiment_id, level, kind), token, now)


def holds(session: Session, experiment_id: str, level: int, kind: str, token: str) -> bool:
    """True while ``token`` holds the run (checked right before its file is published)."""
    return lease.holds(session, of(experiment_id, level, kind), token)


def finish(
    session: Session,
    experiment_id: str,
    level: int,
    kind: str,
    token: str,
    *,
    seconds: float | None = None,
    now: datetime | None = None,
) -> bool:
    """Marks the run finished by its holder (its file is on disk); the claim is dropped."""
    now = now or utcnow()
    return lease.release(
        session,
        of(experiment_id, level, kind),
        token,
        values={"finished_at": now, "seconds": seconds},
        heartbeat_at=now,
    )


def release(
    session: Session,
    experiment_id: str,
    level: int,
    kind: str,
    token: str,
    *,
    error: str | None = None,
) -> bool:
    """Gives an unfinished run up (stopped, or failed with ``error``) so anyone may claim it."""
    return lease.release(session, of(experiment_id, level, kind), token, values={"error": error})


def settle(
    session: Session,
    experiment_id: str,
    level: int,
    kinds: Sequence[str],
    now: datetime | None = None,
) -> int:
    """Marks finished the runs among ``kinds`` whose files exist (the caller checked) but whose
    holder died between publishing the file and recording it; who trained it is kept."""
    now = now or utcnow()
    result = session.execute(
        update(RunClaim)
        .where(
            RunClaim.experiment_id == experiment_id,
            RunClaim.level == level,
            RunClaim.kind.in_(list(kinds)),
            RunClaim.finished_at.is_(None),
        )
        .values(claim_token=None, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def reopen(
    session: Session,
    experiment_id: str,
    level: int,
    kind: str,
    *,
    older_than_seconds: float,
    now: datetime | None = None,
) -> bool:
    """Makes a run recorded as finished claimable again when its file has not appeared for
    ``older_than_seconds`` (deleted by hand; a shared file system gets that long to show it)."""
    now = now or utcnow()
    result = session.execute(
        update(RunClaim)
        .where(
            *of(experiment_id, level, kind).key,
            RunClaim.finished_at < now - timedelta(seconds=older_than_seconds),
        )
        .values(finished_at=None, claim_token=None, heartbeat_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def runs(session: Session, experiment_id: str) -> list[RunClaim]:
    """Every control run's row of an experiment, by level and kind."""
    return list(
        session.scalars(
            select(RunClaim)
            .where(RunClaim.experiment_id == experiment_id)
            .order_by(RunClaim.level, RunClaim.kind)
        )
    )
