"""The experiment's lease: who runs its next level (one :mod:`store.lease` over ``experiments``).

What is particular to experiments: a claim also marks the experiment running and counts the
attempt; ``attempts`` counts claims since the last finished level, so a level that kills its
worker every time (a segfault, an out-of-memory kill, a hard time limit) fails the experiment
after ``max_attempts`` instead of looping forever; and the reconciler's queries (stale
holders, experiments waiting for a worker) live here because they are about this table.

Like store.experiments, every function takes the caller's Session and the caller commits
(``store.db.session_scope``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from store import lease
from store.lease import LeaseOutcome
from store.models import ACTIVE_STATUSES, Experiment, Status, utcnow


def of(experiment_id: str) -> lease.Lease:
    """The lease of one experiment row."""
    return lease.Lease(Experiment, (Experiment.id == experiment_id,))


def claim(
    session: Session,
    experiment_id: str,
    token: str,
    *,
    timeout_seconds: float,
    max_attempts: int,
    queue: str | None = None,
    now: datetime | None = None,
) -> LeaseOutcome:
    """Takes the experiment for ``token`` (and marks it running) if nobody live holds it.

    ``queue``, when given, is the queue the claiming message came from; it is stored so that
    re-sends go where the experiment was sent (a row that already names one keeps it).
    """
    now = now or utcnow()
    values: dict[str, object] = {
        "status": Status.RUNNING,
        "attempts": Experiment.attempts + 1,
        "started_at": case((Experiment.started_at.is_(None), now), else_=Experiment.started_at),
        "updated_at": now,
    }
    if queue is not None:
        values["queue"] = func.coalesce(Experiment.queue, queue)
    won = lease.claim(
        session,
        of(experiment_id),
        token,
        timeout_seconds=timeout_seconds,
        conditions=(
            Experiment.status.in_(ACTIVE_STATUSES),
            Experiment.cancel_requested.is_(False),
            Experiment.attempts < max_attempts,
        ),
        values=values,
        now=now,
    )
    if won:
        return LeaseOutcome.CLAIMED
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
        return LeaseOutcome.MISSING
    if row.status not in ACTIVE_STATUSES:
        return LeaseOutcome.FINISHED
    if lease.is_live(row.claim_token, row.heartbeat_at, now, timeout_seconds):
        return LeaseOutcome.HELD
    if row.cancel_requested:
        return LeaseOutcome.CANCEL_REQUESTED
    if row.attempts >= max_attempts:
        return LeaseOutcome.EXHAUSTED
    return LeaseOutcome.HELD  # lost a race with another claimer between the two statements


def heartbeat(
    session: Session, experiment_id: str, token: str, now: datetime | None = None
) -> bool:
    """Refreshes the claim; False means the caller no longer holds it and must stop."""
    return lease.beat(session, of(experiment_id), token, now)


def holds(session: Session, experiment_id: str, token: str) -> bool:
    """True while ``token`` is the experiment's claim."""
    return lease.holds(session, of(experiment_id), token)


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
    values: dict[str, object] = {"updated_at": now}
    if level_finished:
        values["attempts"] = 0
    return lease.release(session, of(experiment_id), token, values=values, heartbeat_at=now)


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
        else lease.free(Experiment, now, timeout_seconds)
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

    Each row is cleared with its own compare-and-set (:func:`store.lease.take_over`), so two
    reconcilers running at once never both re-send the same experiment.
    """
    now = now or utcnow()
    candidates = session.scalars(
        select(Experiment.id).where(
            Experiment.status.in_(ACTIVE_STATUSES), lease.stale(Experiment, now, timeout_seconds)
        )
    ).all()
    return [
        experiment_id
        for experiment_id in candidates
        if lease.take_over(session, of(experiment_id), timeout_seconds=timeout_seconds, now=now)
    ]


def waiting(session: Session, *, grace_seconds: float, now: datetime | None = None) -> list[str]:
    """Active, unclaimed experiments that should have been picked up by now (oldest first).

    Such an experiment is (or should be) a message in the queue: queued and never started, or
    running between two levels.
    """
    now = now or utcnow()
    cutoff = lease.cutoff(now, grace_seconds)
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


def queue_of(session: Session, experiment_id: str) -> str | None:
    """The queue the experiment was sent to (None: the default queue, or no such row)."""
    return session.scalar(select(Experiment.queue).where(Experiment.id == experiment_id))


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
