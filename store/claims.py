"""Who may work on an experiment right now: a claim with an owner token and a heartbeat.

A broker can deliver one message twice (Redis re-delivers late-acked work after its
visibility timeout or after a reconnect; the reconciler re-sends work it believes lost). The
claim makes that harmless: every state change below is one conditional ``UPDATE`` (a
compare-and-set on ``claim_token`` / ``heartbeat_at``), so of two copies exactly one wins, and
the loser sees it at once. A holder that stops heart-beating for ``timeout`` seconds is
presumed dead and its claim may be taken over; a holder that was presumed dead but is not
notices on its next heartbeat (the UPDATE matches no row) and stops.

``attempts`` counts claims since the last finished level, so a level that kills its worker
every time (a segfault, an out-of-memory kill, a hard time limit) fails the experiment after
``max_attempts`` instead of looping forever.

Like store.experiments, every function takes the caller's Session and the caller commits
(``store.db.session_scope``). Timestamps come from the caller's clock (UTC); hosts are expected to keep time with NTP, and
the timeout should be many heartbeats long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from store.models import ACTIVE_STATUSES, Experiment, Status, utcnow


class ClaimOutcome(StrEnum):
    """What :func:`claim` found; only CLAIMED lets the caller run anything."""

    CLAIMED = "claimed"
    HELD = "held"  # another holder heart-beats: this copy is a duplicate
    FINISHED = "finished"  # succeeded, failed or cancelled already
    CANCEL_REQUESTED = "cancel_requested"  # the caller should mark it cancelled
    EXHAUSTED = "exhausted"  # too many claims without finishing a level
    MISSING = "missing"  # deleted


def _cutoff(now: datetime, timeout_seconds: float) -> datetime:
    return now - timedelta(seconds=timeout_seconds)


def _claimable(cutoff: datetime):
    """Nobody holds it, or the holder's heartbeat is older than the cutoff."""
    return or_(
        Experiment.claim_token.is_(None),
        Experiment.heartbeat_at.is_(None),
        Experiment.heartbeat_at < cutoff,
    )


def claim(
    session: Session,
    experiment_id: str,
    token: str,
    *,
    timeout_seconds: float,
    max_attempts: int,
    now: datetime | None = None,
) -> ClaimOutcome:
    """Takes the experiment for ``token`` (and marks it running) if nobody live holds it."""
    now = now or utcnow()
    result = session.execute(
        update(Experiment)
        .where(
            Experiment.id == experiment_id,
            Experiment.status.in_(ACTIVE_STATUSES),
            Experiment.cancel_requested.is_(False),
            Experiment.attempts < max_attempts,
            _claimable(_cutoff(now, timeout_seconds)),
        )
        .values(
            claim_token=token,
            heartbeat_at=now,
            status=Status.RUNNING,
            attempts=Experiment.attempts + 1,
            started_at=_coalesce_started(now),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        return ClaimOutcome.CLAIMED
    row = session.execute(
        select(
            Experiment.status,
            Experiment.cancel_requested,
            Experiment.claim_token,
            Experiment.heartbeat_at,
            Experiment.attempts,
        ).where(Experiment.id == experiment_id)
    ).one_or_none()
    if row is None:
        return ClaimOutcome.MISSING
    if row.status not in ACTIVE_STATUSES:
        return ClaimOutcome.FINISHED
    live = row.claim_token is not None and (
        row.heartbeat_at is not None and row.heartbeat_at >= _cutoff(now, timeout_seconds)
    )
    if live:
        return ClaimOutcome.HELD
    if row.cancel_requested:
        return ClaimOutcome.CANCEL_REQUESTED
    if row.attempts >= max_attempts:
        return ClaimOutcome.EXHAUSTED
    return ClaimOutcome.HELD  # lost a race with another claimer between the two statements


def _coalesce_started(now: datetime):
    """``started_at`` keeps the first claim's time."""
    return case((Experiment.started_at.is_(None), now), else_=Experiment.started_at)


def heartbeat(
    session: Session, experiment_id: str, token: str, now: datetime | None = None
) -> bool:
    """Refreshes the claim; False means the caller no longer holds it and must stop."""
    now = now or utcnow()
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.claim_token == token)
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def holds(session: Session, experiment_id: str, token: str) -> bool:
    """True while ``token`` is the experiment's claim."""
    found = session.scalar(select(Experiment.claim_token).where(Experiment.id == experiment_id))
    return found == token


def cancel_requested(session: Session, experiment_id: str) -> bool:
    """The flag the API sets; checked by a running level at every evaluation."""
    return bool(
        session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id))
    )


def release(
    session: Session,
    experiment_id: str,
    token: str,
    *,
    level_finished: bool,
    now: datetime | None = None,
) -> bool:
    """Gives the claim up between levels; the experiment stays running, waiting for a worker.

    ``heartbeat_at`` is set to now so that the reconciler's grace for a message in the queue
    starts here; a finished level resets ``attempts``.
    """
    now = now or utcnow()
    values: dict[str, object] = {"claim_token": None, "heartbeat_at": now, "updated_at": now}
    if level_finished:
        values["attempts"] = 0
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.claim_token == token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def finish_unclaimed(
    session: Session,
    experiment_id: str,
    status: Status,
    *,
    timeout_seconds: float | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Final status for an experiment nobody holds (or, with ``timeout_seconds``, whose holder
    is dead). A live holder finishes through ``store.experiments.mark_*(claim_token=...)``.
    """
    now = now or utcnow()
    nobody = (
        Experiment.claim_token.is_(None)
        if timeout_seconds is None
        else _claimable(_cutoff(now, timeout_seconds))
    )
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status.in_(ACTIVE_STATUSES), nobody)
        .values(
            status=status,
            claim_token=None,
            error_type=error_type,
            error_message=error_message,
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def take_over_dead(
    session: Session, *, timeout_seconds: float, now: datetime | None = None
) -> list[str]:
    """Clears claims whose holder stopped heart-beating; returns the ids this caller cleared.

    Each row is cleared with its own compare-and-set, so two reconcilers running at once never
    both re-send the same experiment.
    """
    now = now or utcnow()
    cutoff = _cutoff(now, timeout_seconds)
    candidates = session.scalars(
        select(Experiment.id).where(
            Experiment.status.in_(ACTIVE_STATUSES),
            Experiment.claim_token.is_not(None),
            or_(Experiment.heartbeat_at.is_(None), Experiment.heartbeat_at < cutoff),
        )
    ).all()
    won = []
    for experiment_id in candidates:
        result = session.execute(
            update(Experiment)
            .where(
                Experiment.id == experiment_id,
                Experiment.claim_token.is_not(None),
                or_(Experiment.heartbeat_at.is_(None), Experiment.heartbeat_at < cutoff),
            )
            .values(claim_token=None, heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            won.append(experiment_id)
    return won


def waiting(session: Session, *, grace_seconds: float, now: datetime | None = None) -> list[str]:
    """Active, unclaimed experiments that should have been picked up by now (oldest first).

    Such an experiment is (or should be) a message in the queue: queued and never started, or
    running between two levels.
    """
    now = now or utcnow()
    cutoff = _cutoff(now, grace_seconds)
    return list(
        session.scalars(
            select(Experiment.id)
            .where(
                Experiment.status.in_(ACTIVE_STATUSES),
                Experiment.claim_token.is_(None),
                Experiment.cancel_requested.is_(False),
                or_(
                    Experiment.heartbeat_at < cutoff,
                    and_(Experiment.heartbeat_at.is_(None), Experiment.created_at < cutoff),
                ),
            )
            .order_by(Experiment.created_at)
        ).all()
    )


def count_waiting(session: Session) -> int:
    """Every active unclaimed experiment, however recent: what the queue should hold."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Experiment)
            .where(
                Experiment.status.in_(ACTIVE_STATUSES),
                Experiment.claim_token.is_(None),
                Experiment.cancel_requested.is_(False),
            )
        )
        or 0
    )


def touch_waiting(session: Session, experiment_id: str, now: datetime | None = None) -> bool:
    """Restarts the grace of an unclaimed experiment that was just re-sent; False if claimed."""
    now = now or utcnow()
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.claim_token.is_(None))
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def cancel_unclaimed(session: Session, now: datetime | None = None) -> list[str]:
    """Cancels active experiments that asked to be cancelled while no worker held them."""
    now = now or utcnow()
    ids = session.scalars(
        select(Experiment.id).where(
            Experiment.status.in_(ACTIVE_STATUSES),
            Experiment.claim_token.is_(None),
            Experiment.cancel_requested.is_(True),
        )
    ).all()
    return [i for i in ids if finish_unclaimed(session, i, Status.CANCELLED, now=now)]


def wants_work(session: Session, experiment_id: str) -> bool:
    """True while the experiment exists, is active and nobody asked to cancel it.

    A control run on another worker holds no experiment claim; it checks this at every
    evaluation so that a cancelled, failed or deleted experiment stops it there.
    """
    row = session.execute(
        select(Experiment.status, Experiment.cancel_requested).where(Experiment.id == experiment_id)
    ).one_or_none()
    return row is not None and row.status in ACTIVE_STATUSES and not row.cancel_requested
