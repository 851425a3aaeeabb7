"""Repository functions for experiments and their levels: every read and write the API and the
worker make, in one place, each taking the caller's Session (the caller commits).

State changes are single conditional UPDATEs (``... WHERE status IN (...)``) rather than
read-modify-write, so the API and a worker racing on one row cannot overwrite each other, and
on SQLite the first statement of a writing transaction takes the write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, TextClause, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from lth_core.results.verification import decision, final_ticket
from store.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    Experiment,
    Level,
    Status,
    new_id,
    utcnow,
)


class IdempotencyConflict(Exception):
    """An Idempotency-Key reused with a different spec: replaying would be a lie."""

    def __init__(self, existing: Experiment) -> None:
        super().__init__(f"idempotency key already used for experiment {existing.id}")
        self.existing = existing


def _owned(query: Select[Any], owner: str | None) -> Select[Any]:
    """Restricts to one owner's rows; ``None`` means no restriction (no auth, or an admin)."""
    return query if owner is None else query.where(Experiment.owner == owner)


def get(session: Session, experiment_id: str, *, owner: str | None = None) -> Experiment | None:
    """The experiment with its levels loaded, or None (also when it belongs to someone else)."""
    query = _owned(
        select(Experiment)
        .where(Experiment.id == experiment_id)
        .options(selectinload(Experiment.levels)),
        owner,
    )
    return session.scalars(query).one_or_none()


def find_by_idempotency_key(session: Session, owner: str | None, key: str) -> Experiment | None:
    query = select(Experiment).where(
        func.coalesce(Experiment.owner, "") == (owner or ""),
        Experiment.idempotency_key == key,
    )
    return session.scalars(query.options(selectinload(Experiment.levels))).one_or_none()


def create(
    session: Session,
    spec: dict[str, Any],
    *,
    owner: str | None = None,
    idempotency_key: str | None = None,
    queue: str | None = None,
) -> tuple[Experiment, bool]:
    """A new queued experiment for a validated spec, or the one this idempotency key made.

    Returns ``(experiment, created)``. Raises IdempotencyConflict when the key was used for a
    different spec. Two concurrent requests with one key are settled by the unique index: the
    loser rolls back its savepoint and returns the winner's row.
    """
    if idempotency_key is not None:
        existing = find_by_idempotency_key(session, owner, idempotency_key)
        if existing is not None:
            return _replay(existing, spec), False
    now = utcnow()
    experiment = Experiment(
        id=new_id(),
        name=str(spec.get("name") or spec.get("model") or "experiment"),
        status=Status.QUEUED,
        spec=spec,
        owner=owner,
        idempotency_key=idempotency_key,
        queue=queue,
        progress={},
        cancel_requested=False,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(experiment)
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = find_by_idempotency_key(session, owner, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, spec), False
    experiment.levels = []
    return experiment, True


def find_duplicate(session: Session, spec: dict[str, Any], owner: str | None) -> Experiment | None:
    """The owner's newest queued, running or succeeded experiment of exactly this (validated,
    defaults-filled) spec, or None. A failed or cancelled one is no duplicate: running it
    again is how it is retried. Narrowed by name in SQL, compared in full here (JSON columns
    do not compare alike on every database)."""
    name = str(spec.get("name") or spec.get("model") or "experiment")
    query = (
        select(Experiment)
        .where(
            func.coalesce(Experiment.owner, "") == (owner or ""),
            Experiment.name == name,
            Experiment.status.in_([*ACTIVE_STATUSES, Status.SUCCEEDED]),
        )
        .order_by(Experiment.created_at.desc())
    )
    return next((e for e in session.scalars(query) if e.spec == spec), None)


def _replay(existing: Experiment, spec: dict[str, Any]) -> Experiment:
    if existing.spec != spec:
        raise IdempotencyConflict(existing)
    return existing


def list_experiments(
    session: Session,
    *,
    owner: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    name: str | None = None,
    model: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Experiment], int]:
    """One page of experiments, newest first, and the total matching the filters (`name`:
    a case-insensitive part of the name; `model`: the spec's model)."""
    base = _owned(select(Experiment), owner)
    if status is not None:
        base = base.where(Experiment.status == status)
    if tag is not None:
        base = base.where(has_tag(session, tag))
    if name is not None:
        base = base.where(name_contains(name))
    if model is not None:
        base = base.where(has_model(session, model))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    page = session.scalars(
        base.options(selectinload(Experiment.levels))
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(page), total


def _dialect_name(session: Session | Connection) -> str:
    return (session.dialect if isinstance(session, Connection) else session.get_bind().dialect).name


def has_tag(session: Session | Connection, tag: str) -> TextClause:
    """``tag`` is in the spec's ``tags`` list, tested in SQL so that pagination stays exact."""
    if _dialect_name(session) == "postgresql":
        clause = "(experiments.spec::jsonb -> 'tags') @> jsonb_build_array(CAST(:tag AS text))"
    else:
        clause = (
            "EXISTS (SELECT 1 FROM json_each(experiments.spec, '$.tags') AS t WHERE t.value = :tag)"
        )
    return text(clause).bindparams(bindparam("tag", tag))


def name_contains(name: str) -> Any:
    """The name contains ``name``, in any case (``%`` and ``_`` match themselves)."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Experiment.__table__.c.name.ilike(f"%{escaped}%", escape="\\")


def has_model(session: Session | Connection, model: str) -> TextClause:
    """The spec's ``model`` is this, tested in SQL (like has_tag)."""
    if _dialect_name(session) == "postgresql":
        clause = "(experiments.spec::jsonb ->> 'model') = :model"
    else:
        clause = "json_extract(experiments.spec, '$.model') = :model"
    return text(clause).bindparams(bindparam("model", model))


def count_active(session: Session, owner: str | None) -> int:
    """Queued and running experiments of one owner (``None``: those without an owner)."""
    mine = func.coalesce(Experiment.owner, "") == (owner or "")
    query = select(func.count()).where(mine, Experiment.status.in_(ACTIVE_STATUSES))
    return session.scalar(query) or 0


def stored_bytes(session: Session, owner: str | None) -> tuple[int, list[dict[str, Any]]]:
    """The artifact bytes one owner's experiments were estimated to hold at submit, and the
    specs of those stored before estimates were kept (the caller estimates them)."""
    mine = func.coalesce(Experiment.owner, "") == (owner or "")
    total = session.scalar(select(func.sum(Experiment.artifact_bytes)).where(mine)) or 0
    unknown = session.scalars(
        select(Experiment.spec).where(mine, Experiment.artifact_bytes.is_(None))
    ).all()
    return int(total), list(unknown)


def lock_owner(session: Session, owner: str | None) -> None:
    """Serializes one owner's submissions and resumes until the transaction ends
    (PostgreSQL), so two concurrent ones cannot both pass the per-owner limit. SQLite needs nothing: its writers
    are already serialized by the database lock, which the insert takes before the count.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"lth-owner:{owner or ''}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(key)))


def request_cancel(
    session: Session, experiment_id: str, *, owner: str | None = None
) -> Experiment | None:
    """Cancels: a queued experiment becomes cancelled at once (it never starts); a running one
    gets ``cancel_requested`` and stops at its next evaluation (the worker marks it cancelled).
    A finished experiment is left as it is. Returns the experiment, or None if unknown.
    """
    now = utcnow()
    owned = [Experiment.id == experiment_id]
    if owner is not None:
        owned.append(Experiment.owner == owner)
    session.execute(
        update(Experiment)
        .where(*owned, Experiment.status == Status.QUEUED)
        .values(
            status=Status.CANCELLED,
            cancel_requested=True,
            finished_at=now,
            updated_at=now,
            claim_token=None,
        )
    )
    session.execute(
        update(Experiment)
        .where(*owned, Experiment.status == Status.RUNNING)
        .values(cancel_requested=True, updated_at=now)
    )
    session.expire_all()
    return get(session, experiment_id, owner=owner)


def mask_dependents(session: Session, experiment_id: str) -> list[str]:
    """Experiments that still need the mask of ``experiment_id``: every one whose spec takes
    its mask from it and that has not succeeded (queued, running, or cancelled or failed and
    so resumable: a resumed run reopens its folder, which checks the mask file's hash).

    Deleting the source would make each of them fail in the worker when it loads the mask;
    the API refuses the delete instead. Oldest first.
    """
    source = Experiment.spec[("mask", "experiment_id")].as_string()
    return list(
        session.scalars(
            select(Experiment.id)
            .where(Experiment.status != Status.SUCCEEDED, source == experiment_id)
            .order_by(Experiment.created_at)
        )
    )


def delete_experiment(session: Session, experiment_id: str) -> bool:
    """Deletes a finished experiment's row and its levels; False if it is missing or active.

    Removing the artifacts is the caller's job, after commit (a rolled-back delete must not
    have lost files).
    """
    result = session.execute(
        delete(Experiment).where(
            Experiment.id == experiment_id, Experiment.status.in_(FINISHED_STATUSES)
        )
    )
    session.expire_all()
    return bool(result.rowcount)


def record_progress(session: Session, experiment_id: str, progress: dict[str, Any]) -> bool:
    """Replaces the live progress of an experiment.

    The API reads these keys (all optional): ``level``, ``kind`` (ticket or a control),
    ``iteration``, ``iterations`` (of the current run) and ``metrics`` (the latest evaluation
    record: iteration, train_loss, val_loss, val_accuracy, test_accuracy). Others are kept
    and ignored.
    """
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id)
        .values(progress=dict(progress), updated_at=utcnow())
    )
    return bool(result.rowcount)


def record_level(
    session: Session, experiment_id: str, level: int, summary: dict[str, Any]
) -> Level:
    """Stores a finished level's summary (insert, or replace if recorded before: a redelivered
    task recording the same level twice leaves one row) and refreshes the ticket level.
    """
    values = {
        "experiment_id": experiment_id,
        "level": level,
        "summary": dict(summary),
        "created_at": utcnow(),
    }
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite if dialect == "sqlite" else postgresql).insert(Level).values(**values)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=[Level.experiment_id, Level.level],
                set_={"summary": insert.excluded.summary},
            )
        )
    else:  # pragma: no cover - other dialects: portable but racier
        existing = session.scalars(
            select(Level).where(Level.experiment_id == experiment_id, Level.level == level)
        ).one_or_none()
        if existing is None:
            session.add(Level(**values))
        else:
            existing.summary = dict(summary)
        session.flush()
    session.expire_all()
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise LookupError(f"no experiment {experiment_id}")
    experiment.ticket_level = compute_ticket_level(experiment.spec, experiment.levels)
    experiment.updated_at = utcnow()
    session.flush()
    return next(lv for lv in experiment.levels if lv.level == level)


def compute_ticket_level(spec: dict[str, Any], levels: Sequence[Level]) -> int | None:
    """The winning ticket's level by lth_core's rule (None until level 0 is known; with
    `verify`, until the verification level has confirmed it: lth_core.results.verification)."""
    summaries = [dict(lv.summary, level=lv.level) for lv in sorted(levels, key=lambda x: x.level)]
    return final_ticket(spec, summaries)


def ticket_reason(experiment: Experiment) -> str:
    """Why the experiment's ticket is what it is (or why there is none), in one sentence."""
    levels = sorted(experiment.levels, key=lambda x: x.level)
    summaries = [dict(lv.summary, level=lv.level) for lv in levels]
    spec = experiment.spec if isinstance(experiment.spec, dict) else {}
    return str(decision(spec, summaries)["reason"])


def ticket_summary(experiment: Experiment) -> dict[str, Any] | None:
    """The winning ticket level's summary, or None while there is none."""
    if experiment.ticket_level is None:
        return None
    for lv in experiment.levels:
        if lv.level == experiment.ticket_level:
            return dict(lv.summary, level=lv.level)
    return None


def _finish(
    session: Session,
    experiment_id: str,
    status: Status,
    claim_token: str | None,
    **values: Any,
) -> bool:
    now = utcnow()
    conditions = [Experiment.id == experiment_id, Experiment.status.in_(ACTIVE_STATUSES)]
    if claim_token is not None:
        conditions.append(Experiment.claim_token == claim_token)
    result = session.execute(
        update(Experiment)
        .where(*conditions)
        .values(status=status, finished_at=now, updated_at=now, claim_token=None, **values)
    )
    return bool(result.rowcount)


def mark_succeeded(session: Session, experiment_id: str, *, claim_token: str | None = None) -> bool:
    """Final state; with ``claim_token`` only the current claimant may finish it."""
    return _finish(session, experiment_id, Status.SUCCEEDED, claim_token)


def mark_failed(
    session: Session,
    experiment_id: str,
    error_type: str,
    error_message: str,
    *,
    claim_token: str | None = None,
) -> bool:
    return _finish(
        session,
        experiment_id,
        Status.FAILED,
        claim_token,
        error_type=error_type[:200],
        error_message=error_message[:10_000],
    )


def mark_cancelled(session: Session, experiment_id: str, *, claim_token: str | None = None) -> bool:
    return _finish(session, experiment_id, Status.CANCELLED, claim_token, cancel_requested=True)
