"""The API's hot read paths in SQLAlchemy Core: a key, an experiment, a page, a version.

Polling clients read one experiment (or one page) many times a second while it changes a few
times a minute. The ORM path (identity map, relationship loading, attribute instrumentation)
cost more than the queries themselves; these are plain SELECTs over one connection that
return plain rows, and :func:`version` reads the few columns an ``ETag`` is computed from, so
an unchanged experiment is answered without reading its spec or its levels at all.

Every function takes an open Connection (``store.db.read_connection``): one per request, held
only while the request reads. ``owner`` restricts to one owner's rows (None: no restriction),
exactly as :mod:`store.experiments` does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, true

from store.api_keys import KeyRecord
from store.models import ApiKey, Experiment, Level

#: The columns that change whenever anything a client sees of an experiment changes:
#: every UPDATE of the row sets ``updated_at`` (the column's ``onupdate``), recording a level
#: sets it too, and the others are there so that a clock step cannot hide a change.
_E = Experiment.__table__.c  # plain table columns: no ORM annotation to adapt per execution
_L = Level.__table__.c
_K = ApiKey.__table__.c
_VERSION_COLUMNS = (
    _E.id,
    _E.updated_at,
    _E.status,
    _E.cancel_requested,
    _E.attempts,
    _E.ticket_level,
    _E.queue,
)

#: Bumped whenever the response shape changes, so that a client's cached ETag cannot match a
#: body of another shape after an upgrade.
#: 2: the experiment's ``queue``; 3: cost, time_to_ticket, verified; 4: progress ETA and
#: kinds, notes; 5: progress.waiting (the version gains the queue and the waiting note);
#: 6: cost.remaining_estimate before the first level, with its basis.
REPRESENTATION = "lth-experiment-6"


@dataclass
class LevelRow:
    level: int
    summary: dict[str, Any]
    created_at: datetime | None = None  # when it was recorded: the API's time_to_ticket


@dataclass
class ExperimentRow:
    """An experiment as the presenters read it (the same attribute names as the ORM class)."""

    id: str
    name: str
    status: str
    owner: str | None
    spec: dict[str, Any]
    progress: dict[str, Any]
    error_type: str | None
    error_message: str | None
    cancel_requested: bool
    attempts: int
    ticket_level: int | None
    queue: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    levels: list[LevelRow] = field(default_factory=list)

    @property
    def version(self) -> tuple[Any, ...]:
        """The version columns (as :func:`version` reads them)."""
        return tuple(getattr(self, c.name) for c in _VERSION_COLUMNS)

    @property
    def etag(self) -> str:
        return etag_of(self.version)


_EXPERIMENT_COLUMNS = tuple(
    _E[name] for name in ExperimentRow.__dataclass_fields__ if name != "levels"
)

# Statements built once: each execution then reuses the compiled form from SQLAlchemy's cache
# without rebuilding (and re-hashing) the expression.
_KEY = select(_K.id, _K.owner, _K.key_hash, _K.admin, _K.revoked_at).where(_K.id == bindparam("k"))
_ANY_KEY = select(_K.id).where(_K.revoked_at.is_(None)).limit(1)
_BY_ID = select(*_EXPERIMENT_COLUMNS).where(_E.id == bindparam("id"))
_BY_ID_OWNED = _BY_ID.where(_E.owner == bindparam("owner"))
_VERSION = select(*_VERSION_COLUMNS).where(_E.id == bindparam("id"))
_VERSION_OWNED = _VERSION.where(_E.owner == bindparam("owner"))
_LEVELS = (
    select(_L.experiment_id, _L.level, _L.summary, _L.created_at)
    .where(_L.experiment_id.in_(bindparam("ids", expanding=True)))
    .order_by(_L.experiment_id, _L.level)
)
_BY_IDS = select(*_EXPERIMENT_COLUMNS).where(_E.id.in_(bindparam("ids", expanding=True)))


def etag_of(version: tuple[Any, ...]) -> str:
    """A strong ETag (quoted) over one experiment's version columns."""
    text = "|".join(
        [REPRESENTATION, *(v.isoformat() if isinstance(v, datetime) else str(v) for v in version)]
    )
    return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


def list_etag(versions: list[tuple[Any, ...]], total: int, query: str) -> str:
    """A strong ETag over a page: every item's version, the total and the query that made it."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{REPRESENTATION}|list|{total}|{query}".encode())
    for version in versions:
        digest.update(etag_of(version).encode())
    return '"' + digest.hexdigest() + '"'


def key(connection: Connection, key_id: str) -> KeyRecord | None:
    row = connection.execute(_KEY, {"k": key_id}).first()
    if row is None:
        return None
    return KeyRecord(row.id, row.owner, row.key_hash, bool(row.admin), row.revoked_at is not None)


def any_active_key(connection: Connection) -> bool:
    return connection.execute(_ANY_KEY).first() is not None


def version(
    connection: Connection, experiment_id: str, *, owner: str | None
) -> tuple[Any, ...] | None:
    """The experiment's version columns (see :func:`etag_of`), or None if unknown or not
    the owner's."""
    if owner is None:
        row = connection.execute(_VERSION, {"id": experiment_id}).first()
    else:
        row = connection.execute(_VERSION_OWNED, {"id": experiment_id, "owner": owner}).first()
    return tuple(row) if row is not None else None


def experiment(
    connection: Connection, experiment_id: str, *, owner: str | None, with_levels: bool = True
) -> ExperimentRow | None:
    """The experiment and (unless ``with_levels`` is False) its levels, in level order."""
    if owner is None:
        row = connection.execute(_BY_ID, {"id": experiment_id}).first()
    else:
        row = connection.execute(_BY_ID_OWNED, {"id": experiment_id, "owner": owner}).first()
    if row is None:
        return None
    result = ExperimentRow(**row._asdict())
    if with_levels:
        result.levels = levels_of(connection, [experiment_id]).get(experiment_id, [])
    return result


def levels_of(connection: Connection, ids: list[str]) -> dict[str, list[LevelRow]]:
    """The finished levels of each experiment in ``ids``, in level order, in one query."""
    if not ids:
        return {}
    out: dict[str, list[LevelRow]] = {}
    for row in connection.execute(_LEVELS, {"ids": list(ids)}):
        out.setdefault(row.experiment_id, []).append(
            LevelRow(row.level, row.summary, row.created_at)
        )
    return out


def page_versions(
    connection: Connection,
    *,
    owner: str | None,
    status: str | None,
    tag_clause: Any | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[Any, ...]], int]:
    """The version columns of one page (newest first) and the total matching the filters."""
    where = [true()]
    if owner is not None:
        where.append(_E.owner == owner)
    if status is not None:
        where.append(_E.status == status)
    if tag_clause is not None:
        where.append(tag_clause)
    total = connection.execute(
        select(func.count()).select_from(Experiment.__table__).where(*where)
    ).scalar()
    rows = connection.execute(
        select(*_VERSION_COLUMNS)
        .where(*where)
        .order_by(_E.created_at.desc(), _E.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [tuple(r) for r in rows], int(total or 0)


def experiments_by_id(connection: Connection, ids: list[str]) -> list[ExperimentRow]:
    """The experiments with these ids, with their levels, in the order of ``ids``."""
    if not ids:
        return []
    rows = connection.execute(_BY_IDS, {"ids": list(ids)}).all()
    by_id = {row.id: ExperimentRow(**row._asdict()) for row in rows}
    levels = levels_of(connection, list(by_id))
    for experiment_id, row in by_id.items():
        row.levels = levels.get(experiment_id, [])
    return [by_id[i] for i in ids if i in by_id]
