"""The one lease mechanism: who may work on a row right now, by an owner token and a heartbeat.

Experiments (``experiments``: who runs the next level) and control runs (``run_claims``: who
trains one control of a level) are both leased through this module; each table has a
``claim_token`` and a ``heartbeat_at`` column, and :mod:`store.claims` / :mod:`store.run_claims`
only add what is particular to their table (which rows are claimable, what a claim records).

A broker can deliver one message twice (Redis re-delivers late-acked work after its visibility
timeout or a reconnect; the reconciler re-sends work it believes lost). The lease makes that
harmless: every state change is one conditional ``UPDATE`` (a compare-and-set on
``claim_token`` / ``heartbeat_at``), so of two copies exactly one wins and the loser sees it at
once (``rowcount``). A claim that did not win reads the row afterwards only to *explain* why
(:class:`LeaseOutcome`); the decision itself was the UPDATE. A holder that stops heart-beating
for ``timeout_seconds`` is presumed dead and its lease may be taken over; a holder that was
presumed dead but is not notices on its next beat (the UPDATE matches no row) and stops.

Writing first also matters on SQLite: a transaction that reads and then writes can be refused
("database is locked") when another connection wrote in between; one that writes first waits
on ``busy_timeout`` like any writer (see store.db). Every function takes the caller's Session;
the caller commits. Timestamps come from the caller's clock (UTC; hosts keep time with NTP,
and the timeout should be many heartbeats long).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from store.models import utcnow


class LeaseOutcome(StrEnum):
    """What a claim found; only CLAIMED lets the caller work. Tables use the subset that applies."""

    CLAIMED = "claimed"
    HELD = "held"  # a live holder heart-beats: this copy is a duplicate (or lost a race)
    FINISHED = "finished"  # the work is done already (experiment final, or run recorded)
    CANCEL_REQUESTED = "cancel_requested"  # experiments: the caller should mark it cancelled
    EXHAUSTED = "exhausted"  # experiments: too many claims without finishing a level
    MISSING = "missing"  # no such row (deleted, or never registered)


@dataclass(frozen=True)
class Lease:
    """The lease of one row: ``model`` (a mapped class with ``claim_token`` and
    ``heartbeat_at``) and the clauses that select exactly that row."""

    model: Any
    key: tuple[ColumnElement[bool], ...]

    @property
    def token(self) -> Any:
        return self.model.claim_token

    @property
    def heartbeat(self) -> Any:
        return self.model.heartbeat_at


def cutoff(now: datetime, timeout_seconds: float) -> datetime:
    """Heartbeats older than this are stale: their holder is presumed dead."""
    return now - timedelta(seconds=timeout_seconds)


def free(model: Any, now: datetime, timeout_seconds: float) -> ColumnElement[bool]:
    """SQL: nobody holds the row, or its holder's heartbeat is stale."""
    return or_(
        model.claim_token.is_(None),
        model.heartbeat_at.is_(None),
        model.heartbeat_at < cutoff(now, timeout_seconds),
    )


def stale(model: Any, now: datetime, timeout_seconds: float) -> ColumnElement[bool]:
    """SQL: someone holds the row but stopped heart-beating."""
    return (model.claim_token.is_not(None)) & or_(
        model.heartbeat_at.is_(None), model.heartbeat_at < cutoff(now, timeout_seconds)
    )


def is_live(
    token: str | None, heartbeat_at: datetime | None, now: datetime, timeout: float
) -> bool:
    """Python twin of ``not free(...)`` for a row already read (used to explain a lost claim)."""
    return token is not None and heartbeat_at is not None and heartbeat_at >= cutoff(now, timeout)


def _update(
    session: Session, lease: Lease, where: Sequence[Any], values: Mapping[str, Any]
) -> bool:
    result = session.execute(
        update(lease.model)
        .where(*lease.key, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def claim(
    session: Session,
    lease: Lease,
    token: str,
    *,
    timeout_seconds: float,
    conditions: Sequence[ColumnElement[bool]] = (),
    values: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Takes the lease for ``token`` if it is free (or stale) and ``conditions`` hold.

    ``values`` are written in the same UPDATE (status, attempts, who claimed...). False means
    another holder is live, a condition failed, or the row is missing: the caller explains it.
    """
    now = now or utcnow()
    return _update(
        session,
        lease,
        [free(lease.model, now, timeout_seconds), *conditions],
        {"claim_token": token, "heartbeat_at": now, **(values or {})},
    )


def beat(session: Session, lease: Lease, token: str, now: datetime | None = None) -> bool:
    """Refreshes the heartbeat; False means ``token`` no longer holds the lease: stop.

    A heartbeat is nothing a client sees, so it keeps the row's ``updated_at`` (naming the
    column suppresses its ``onupdate``): the experiment's ETag, computed from it, then changes
    only with what the API shows, and a poller of a running experiment gets 304s between
    progress writes."""
    values: dict[str, Any] = {"heartbeat_at": now or utcnow()}
    if hasattr(lease.model, "updated_at"):
        values["updated_at"] = lease.model.updated_at
    return _update(session, lease, [lease.token == token], values)


def holds(session: Session, lease: Lease, token: str) -> bool:
    """True while ``token`` holds the lease (a read; prefer :func:`beat` before a write)."""
    return session.scalar(select(lease.token).where(*lease.key)) == token


def release(
    session: Session,
    lease: Lease,
    token: str,
    *,
    values: Mapping[str, Any] | None = None,
    heartbeat_at: datetime | None = None,
) -> bool:
    """Gives the lease up (writing ``values`` with it) if ``token`` holds it.

    ``heartbeat_at`` is what the column keeps afterwards: None (free at once), or a time that
    starts some other clock (the reconciler's grace for a re-sent experiment, say).
    Finishing is a release whose ``values`` record the result.
    """
    return _update(
        session,
        lease,
        [lease.token == token],
        {"claim_token": None, "heartbeat_at": heartbeat_at, **(values or {})},
    )


def take_over(
    session: Session,
    lease: Lease,
    *,
    timeout_seconds: float,
    values: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Clears a stale lease (its holder presumed dead) so it can be claimed again.

    Compare-and-set on staleness: of several callers at once exactly one gets True, so one
    reconciler re-sends the work. The heartbeat is set to ``now``, starting the new grace.
    """
    now = now or utcnow()
    return _update(
        session,
        lease,
        [stale(lease.model, now, timeout_seconds)],
        {"claim_token": None, "heartbeat_at": now, **(values or {})},
    )
