"""The SQLAlchemy engine and sessions, tuned so the API and workers can share one database.

SQLite is the zero-setup default and must be safe with a worker in another process: WAL lets
readers proceed during a write, and ``busy_timeout`` makes a writer wait for the lock instead of
failing. That wait only happens when a transaction asks for the write lock as it *begins*: a
deferred ``BEGIN`` that reads and then writes is refused at once ("database is locked",
``SQLITE_BUSY`` without waiting) whenever another connection committed a write in between,
because SQLite cannot upgrade a read snapshot that is no longer the newest. So every
transaction here begins with ``BEGIN IMMEDIATE`` (the SQLAlchemy documentation's recipe:
pysqlite's own transaction handling is switched off and the ``begin`` event emits the
statement), which queues concurrent writers on ``busy_timeout`` instead of failing them.

A transaction that will only read says so and begins ``BEGIN DEFERRED`` instead, taking no
lock, so reads never wait on a writer: ``session_factory(engine, read_only=True)``,
``session_scope(read_only=True)``, :func:`read_connection`, or on any connection the execution
option ``{READ_ONLY_OPTION: True}``, set before the transaction begins. PostgreSQL keeps its
default behaviour (MVCC; no lock to take up front) and gets ``pool_pre_ping`` so a restarted
server costs a reconnect, not an error.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from store.settings import Capacity, Settings, get_settings

#: Execution option (on a Connection, or a Session's bind via ``execution_options``) marking a
#: transaction that will only read: on SQLite it begins ``BEGIN DEFERRED`` and takes no lock.
READ_ONLY_OPTION = "lth_read_only"


def make_engine(
    url: str, *, busy_timeout_seconds: float = 30.0, capacity: Capacity | None = None
) -> Engine:
    """An engine for ``url`` with the per-dialect settings described in the module docstring.

    ``capacity`` sizes the connection pool (see :class:`store.settings.Capacity`); the pool
    opens connections only as they are needed, so a large size costs an idle process nothing.
    """
    parsed = make_url(url)
    pool: dict[str, Any] = {}
    if capacity is not None and not (parsed.database or "").startswith(":memory:"):
        pool = {
            "pool_size": capacity.pool_size,
            "max_overflow": capacity.max_overflow,
            "pool_timeout": capacity.pool_timeout,
        }
    if parsed.get_backend_name() == "postgresql":
        return create_engine(_postgres_driver(parsed), pool_pre_ping=True, **pool)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)

    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_seconds},
        **pool,
    )
    busy_ms = int(busy_timeout_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Through the Connection (not the raw cursor) so that statement tracing sees it.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


def _postgres_driver(url: URL) -> URL:
    """A plain ``postgresql://`` URL means psycopg 3 in SQLAlchemy 2.1; use whichever is installed.

    The project depends on psycopg2-binary, so users' ordinary URLs must work with it.
    """
    if url.drivername != "postgresql":
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return url.set(drivername="postgresql+psycopg")
    return url.set(drivername="postgresql+psycopg2")


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (responses are built after it).

    ``read_only=True`` makes sessions whose transactions begin ``BEGIN DEFERRED`` on SQLite:
    for code that never writes, so it never queues behind a writer. A write in such a session
    may fail with "database is locked" under contention (see the module docstring).
    """
    bind = engine.execution_options(**{READ_ONLY_OPTION: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A Core connection for reads only (``BEGIN DEFERRED`` on SQLite), returned to the pool
    on exit: the API's fast read paths take one per request, inside one thread."""
    with engine.connect() as connection:
        # Closing ends the read transaction (one ROLLBACK; the pool then skips its own reset).
        yield connection.execution_options(**{READ_ONLY_OPTION: True})


def init_db(engine: Engine) -> None:
    """Creates missing tables and columns; idempotent, safe to call from every process at start.

    ``create_all`` never alters an existing table, so a column added after a database was
    created is added here (:data:`ADDED_COLUMNS`, nullable, so old rows stay valid).
    """
    from sqlalchemy import inspect

    from store.models import Base

    Base.metadata.create_all(engine)
    inspector = inspect(engine)
    for table, column, ddl_type in ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table)}
        if column in present:
            continue
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}")
        except Exception:
            # Another process added it first; anything else shows up on first use.
            fresh = {c["name"] for c in inspect(engine).get_columns(table)}
            if column not in fresh:
                raise


#: Columns added to existing tables since the first release: (table, column, SQL type).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("experiments", "queue", "VARCHAR(200)"),
    ("experiments", "artifact_bytes", "BIGINT"),
)


_ENGINES: dict[tuple[str, float, Capacity], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the settings' database, created (with its tables) once.

    One engine per URL keeps one connection pool per process, as SQLAlchemy intends.
    """
    settings = settings or get_settings()
    key = (settings.resolved_database_url, settings.db_busy_timeout_seconds, settings.capacity)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = make_engine(key[0], busy_timeout_seconds=key[1], capacity=key[2])
            init_db(engine)
            _ENGINES[key] = engine
        return engine


def dispose_engines() -> None:
    """Closes every cached engine: for tests, and for forked children (never share a pool)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


@contextmanager
def session_scope(
    settings: Settings | None = None, *, read_only: bool = False
) -> Iterator[Session]:
    """One unit of work for the worker: commits on success, rolls back on any exception.

    Keep it short: a session open across a training run would hold a database transaction
    (and, on SQLite, the write lock) for the whole run. ``read_only=True`` for pure reads
    (``BEGIN DEFERRED``; see the module docstring).
    """
    session = session_factory(get_engine(settings), read_only=read_only)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
