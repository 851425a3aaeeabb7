"""The tables: ``experiments`` (one row per submitted spec), ``levels`` (one per finished level),
``run_claims`` (one per control run offered to other workers), ``api_keys``, ``workers``
(live worker processes and their queues) and ``worker_stats`` (what each worker trained, for
``/metrics``).

The database is the system of record. The broker carries only ids, and artifacts on disk are
found from the id, so a lost message or a restarted process never loses what a row says.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from store.status import ACTIVE_STATUSES, FINISHED_STATUSES, Status, check_constraint_sql

__all__ = ["ACTIVE_STATUSES", "FINISHED_STATUSES", "Status"]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC: the only kind of datetime stored."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh experiment id: 32 lowercase hex digits (safe in paths and URLs)."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite has no timezone type and returns naive values; storing naive UTC there and
    re-attaching UTC on the way out gives both dialects the same behaviour.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; store timezone-aware UTC values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, recursively.

    A diverged run reports a NaN loss; JSON has no NaN and PostgreSQL refuses it, and a
    lost progress update or level would be far worse than a missing number.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


class FiniteJSON(TypeDecorator[Any]):
    """JSON that stores NaN/inf as null (see :func:`finite_json`), identically on both dialects."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return finite_json(value)


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    """One submitted experiment: its spec, where it stands, and who may see it."""

    __tablename__ = "experiments"
    __table_args__ = (
        CheckConstraint(
            check_constraint_sql(),
            name="ck_experiments_status",
        ),
        Index("ix_experiments_created_at", "created_at"),
        Index("ix_experiments_status_created_at", "status", "created_at"),
        Index("ix_experiments_owner_created_at", "owner", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=Status.QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column(FiniteJSON)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    progress: Mapped[dict[str, Any]] = mapped_column(FiniteJSON, default=dict)
    error_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    ticket_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The broker queue the experiment was sent to (``lth``, ``lth.gpu``, ``lth.cpu`` or a
    #: custom one); every later message about it (re-sends included) goes there too. NULL in
    #: rows older than the column: the default queue.
    queue: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Bytes of artifacts it will write, estimated at submit (the owner's storage quota).
    artifact_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    levels: Mapped[list[Level]] = relationship(
        back_populates="experiment",
        order_by="Level.level",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


# NULL owners compare distinct in a plain UNIQUE; coalesce makes "no owner" one owner. Rows
# without an idempotency key stay distinct because their NULL keys do.
Index(
    "uq_experiments_owner_idempotency_key",
    func.coalesce(Experiment.owner, ""),
    Experiment.idempotency_key,
    unique=True,
)


class Level(Base):
    """A finished pruning level: the summary the engine wrote to ``summary.json``."""

    __tablename__ = "levels"
    __table_args__ = (
        UniqueConstraint("experiment_id", "level", name="uq_levels_experiment_level"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(FiniteJSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    experiment: Mapped[Experiment] = relationship(back_populates="levels")


class RunClaim(Base):
    """One control run of one level: who holds it (if anyone), who finished it and when.

    The controls of a level depend only on its mask, so other workers may train them while the
    level's holder trains the ticket; the row is their lease (``claim_token`` /
    ``heartbeat_at``, see store.lease) and the record of who trained each (``worker``, ``pid``,
    ``attempts``). The run's metrics are the engine's file, not here.
    """

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


class ApiKey(Base):
    """An API key: who it speaks for and whether it is an admin; never the key itself.

    Only a SHA-256 digest of the key is stored. The key carries 256 random bits, so a fast
    hash is enough (no password stretching needed) and a stolen table reveals no usable key.
    ``id`` is the key's public prefix: it names the key in ``lth keys list``/``revoke`` and
    lets a request's key be found by id and then compared in constant time.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_revoked_at", "revoked_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class WorkerPresence(Base):
    """A live worker process and the queues it consumes, refreshed by its reconciler.

    The broker cannot say who consumes a queue (a Redis list has no consumers, the embedded
    broker's files none either), so each worker says it here; the API reads it to tell a user
    that nobody consumes the queue an experiment waits in, and to accept a custom queue.
    """

    __tablename__ = "workers"

    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(JSON)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkerStats(Base):
    """What one worker process has trained, for the API's ``/metrics``.

    Workers push their numbers here instead of serving a metrics port: a GPU worker may sit
    behind NAT or be scaled to zero between scrapes, where no Prometheus can reach it, while
    every worker already reaches the database, the system of record. ``iterations`` only grows
    (a counter: every run's training iterations, a stacked level's members each counted);
    ``iterations_per_second`` is the rate over the last interval written (0 between tasks).
    """

    __tablename__ = "worker_stats"

    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    iterations: Mapped[int] = mapped_column(BigInteger, default=0)
    iterations_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
