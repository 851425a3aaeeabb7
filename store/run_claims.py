"""Who may train one control run of a level right now, and who trained it: the ``run_claims`` table.

The controls of a level (random_reinit, random_prune) depend only on the level's mask, so they
may run on other workers while the worker holding the experiment trains the ticket. Each such
run gets a row here, and whoever trains it first claims the row with an owner token and keeps it
alive with a heartbeat, exactly like the experiment claim in :mod:`store.claims`: every state
change is one conditional ``UPDATE`` (a compare-and-set on ``claim_token`` / ``heartbeat_at``),
so of two workers exactly one trains a run, and a holder whose heartbeat went stale may be
taken over by anyone (the worker holding the experiment does so while it waits).

The row is also the record of who trained the run (``worker``, ``pid``) and how often it was
claimed (``attempts``), which is what lets an operator (and a test) see that the controls
really ran on several machines. The run's metrics are not here: they are the engine's file,
and the level's summary is recorded through :mod:`store.experiments` as before.

Like store.claims, every function takes the caller's Session and the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.models import Base, UTCDateTime, utcnow


class RunClaim(Base):
    """One control run of one level: who holds it (if anyone), who finished it and when."""

    __tablename__ = "run_claims"
    __table_args__ = (UniqueConstraint("experiment_id", "level", "kind", name="uq_run_claims_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def done(self) -> bool:
        return self.finished_at is not None


class RunClaimOutcome(StrEnum):
    """What :func:`claim` found; only CLAIMED lets the caller train the run."""

    CLAIMED = "claimed"
    HELD = "held"  # a live holder is training it
    DONE = "done"  # finished already
    MISSING = "missing"  # never registered (or the experiment was deleted)


def _key(experiment_id: str, level: int, kind: str):
    return (
        RunClaim.experiment_id == experiment_id,
        RunClaim.level == level,
        RunClaim.kind == kind,
    )


def _claimable(now: datetime, timeout_seconds: float):
    """Unfinished, and nobody holds it or the holder's heartbeat is older than the timeout."""
    cutoff = now - timedelta(seconds=timeout_seconds)
    return (
        RunClaim.finished_at.is_(None),
        or_(
            RunClaim.claim_token.is_(None),
            RunClaim.heartbeat_at.is_(None),
            RunClaim.heartbeat_at < cutoff,
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
                *_claimable(now, timeout_seconds),
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
) -> RunClaimOutcome:
    """Takes the run for ``token`` if it is unfinished and nobody live holds it."""
    now = now or utcnow()
    result = session.execute(
        update(RunClaim)
        .where(*_key(experiment_id, level, kind), *_claimable(now, timeout_seconds))
        .values(
            claim_token=token,
            heartbeat_at=now,
            worker=worker,
            pid=pid,
            attempts=RunClaim.attempts + 1,
            started_at=now,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        return RunClaimOutcome.CLAIMED
    finished = session.execute(
        select(RunClaim.finished_at).where(*_key(experiment_id, level, kind))
    ).one_or_none()
    if finished is None:
        return RunClaimOutcome.MISSING
    return RunClaimOutcome.DONE if finished[0] is not None else RunClaimOutcome.HELD


def heartbeat(
    session: Session,
    experiment_id: str,
    level: int,
    kind: str,
    token: str,
    now: datetime | None = None,
) -> bool:
    """Refreshes the claim; False means the caller no longer holds it and must stop."""
    result = session.execute(
        update(RunClaim)
        .where(*_key(experiment_id, level, kind), RunClaim.claim_token == token)
        .values(heartbeat_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def holds(session: Session, experiment_id: str, level: int, kind: str, token: str) -> bool:
    """True while ``token`` holds the run (checked right before its file is published)."""
    found = session.scalar(select(RunClaim.claim_token).where(*_key(experiment_id, level, kind)))
    return found == token


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
    result = session.execute(
        update(RunClaim)
        .where(*_key(experiment_id, level, kind), RunClaim.claim_token == token)
        .values(claim_token=None, heartbeat_at=now, finished_at=now, seconds=seconds)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


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
    result = session.execute(
        update(RunClaim)
        .where(*_key(experiment_id, level, kind), RunClaim.claim_token == token)
        .values(claim_token=None, heartbeat_at=None, error=error)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


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
            *_key(experiment_id, level, kind),
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
