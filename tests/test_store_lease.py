"""The lease primitive on both databases, and SQLite writers that wait instead of failing.

The lease (store.lease) is exercised through both tables that use it: an experiment's lease
(store.claims) and a control run's (store.run_claims): claim, a duplicate refused, beat,
take-over of a stale holder, the old holder learning it lost, release and finish.

The SQLite half reproduces the issue's "database is locked": API-style submissions and
cancels (read, then write) against a worker claiming, heart-beating and writing progress, in
threads and in processes. With a deferred ``BEGIN`` such a transaction is refused at once when
another connection wrote in between; with ``BEGIN IMMEDIATE`` it waits on ``busy_timeout``.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from test_service_support import tiny_spec

from store import claims, experiments, lease, run_claims
from store.db import dispose_engines, get_engine, session_scope
from store.lease import LeaseOutcome
from store.models import Experiment, Status, utcnow
from store.settings import Settings

pytest_plugins = ("test_service_support",)

#: Seconds each concurrency test keeps its writers going.
STRESS_SECONDS = 2.5


def _experiment(settings: Settings, **values: Any) -> str:
    with session_scope(settings) as session:
        experiment, _ = experiments.create(session, tiny_spec(), **values)
        return experiment.id


# --------------------------------------------------------------------------- the primitive


def test_experiment_lease_claim_beat_take_over_release(settings: Settings) -> None:
    experiment_id = _experiment(settings)
    start = utcnow()
    later = start + timedelta(seconds=30)
    with session_scope(settings) as s:
        first = claims.claim(s, experiment_id, "a", timeout_seconds=10, max_attempts=3, now=start)
        assert first is LeaseOutcome.CLAIMED
        again = claims.claim(s, experiment_id, "b", timeout_seconds=10, max_attempts=3, now=start)
        assert again is LeaseOutcome.HELD, "a live holder refuses a duplicate"
        assert claims.heartbeat(s, experiment_id, "a", now=start)
        assert not claims.heartbeat(s, experiment_id, "b"), "only the holder beats"
        assert claims.holds(s, experiment_id, "a")
    with session_scope(settings) as s:  # a's heartbeat went stale: the reconciler takes over
        assert claims.take_over_dead(s, timeout_seconds=10, now=later) == [experiment_id]
        assert claims.take_over_dead(s, timeout_seconds=10, now=later) == [], "exactly once"
        assert not claims.heartbeat(s, experiment_id, "a"), "the old holder learns it lost"
        assert claims.claim(s, experiment_id, "b", timeout_seconds=10, max_attempts=3, now=later)
        assert not claims.release(s, experiment_id, "a", level_finished=True)
        assert claims.release(s, experiment_id, "b", level_finished=True, now=later)
    with session_scope(settings) as s:
        row = s.get(Experiment, experiment_id)
        assert row.claim_token is None and row.status == Status.RUNNING
        assert row.attempts == 0, "a finished level resets the attempts"
        assert row.heartbeat_at == later, "the reconciler's grace starts at the release"


def test_run_lease_claim_beat_take_over_release_finish(settings: Settings) -> None:
    experiment_id = _experiment(settings)
    start = utcnow()
    later = start + timedelta(seconds=30)

    def claim(s: Any, token: str, now: Any) -> LeaseOutcome:
        return run_claims.claim(
            s, experiment_id, 1, "random_prune", token, worker=token, pid=1, timeout_seconds=10,
            now=now,
        )  # fmt: skip

    with session_scope(settings) as s:
        assert claim(s, "a", start) is LeaseOutcome.MISSING, "not registered yet"
        run_claims.register(s, experiment_id, 1, ["random_prune"])
        assert claim(s, "a", start) is LeaseOutcome.CLAIMED
        assert claim(s, "b", start) is LeaseOutcome.HELD
        assert run_claims.heartbeat(s, experiment_id, 1, "random_prune", "a", now=start)
        assert claim(s, "b", later) is LeaseOutcome.CLAIMED, "a stale holder is taken over"
        assert not run_claims.heartbeat(s, experiment_id, 1, "random_prune", "a")
        assert run_claims.release(s, experiment_id, 1, "random_prune", "b", error="boom")
        assert claim(s, "c", later) is LeaseOutcome.CLAIMED, "released: free at once"
        assert not run_claims.finish(s, experiment_id, 1, "random_prune", "b")
        assert run_claims.finish(s, experiment_id, 1, "random_prune", "c", seconds=2.0)
        assert claim(s, "d", later + timedelta(hours=1)) is LeaseOutcome.FINISHED
        (row,) = run_claims.runs(s, experiment_id)
        assert (row.worker, row.attempts, row.error, row.claim_token) == ("c", 3, None, None)


def test_lease_take_over_is_a_compare_and_set(settings: Settings) -> None:
    """Two reconcilers seeing the same stale lease: one clears it, the other gets False."""
    experiment_id = _experiment(settings)
    start = utcnow()
    with session_scope(settings) as s:
        claims.claim(s, experiment_id, "dead", timeout_seconds=5, max_attempts=3, now=start)
    one = lease.Lease(Experiment, (Experiment.id == experiment_id,))
    with session_scope(settings) as s:
        later = start + timedelta(seconds=10)
        assert lease.take_over(s, one, timeout_seconds=5, now=later)
        assert not lease.take_over(s, one, timeout_seconds=5, now=later)


# --------------------------------------------------------------------------- SQLite locking


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(data_dir=tmp_path / "data", db_busy_timeout_seconds=30)
    dispose_engines()


def test_transactions_begin_immediate_and_read_only_ones_deferred(
    sqlite_settings: Settings,
) -> None:
    """Traced statements: the lock is asked for before the first read of a write transaction."""
    engine = get_engine(sqlite_settings)
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def trace(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.upper().split()
        seen.append(" ".join(words[:2]) if words[0] == "BEGIN" else words[0])

    experiment_id = _experiment(sqlite_settings)
    with session_scope(sqlite_settings) as s:
        experiments.request_cancel(s, experiment_id)
    assert seen[0] == "BEGIN IMMEDIATE", seen
    first_write = next(i for i, st in enumerate(seen) if st in ("INSERT", "UPDATE"))
    assert "BEGIN IMMEDIATE" in seen[:first_write]
    seen.clear()
    with session_scope(sqlite_settings, read_only=True) as s:
        assert s.get(Experiment, experiment_id).cancel_requested
    assert seen[0] == "BEGIN DEFERRED", seen
    event.remove(engine, "before_cursor_execute", trace)


def _api_and_worker_traffic(settings: Settings, seconds: float, tag: str) -> list[str]:
    """Submits and cancels (API-style) while a worker claims, beats and writes progress;
    returns every error seen. Each thread uses its own sessions, as the processes do."""
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    experiment_id = _experiment(settings)

    def api() -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                with session_scope(settings) as s:
                    experiments.lock_owner(s, None)
                    created, _ = experiments.create(
                        s, tiny_spec(seed=n), idempotency_key=f"{tag}-{threading.get_ident()}-{n}"
                    )
                with session_scope(settings) as s:
                    experiments.request_cancel(s, created.id)
            except Exception as exc:
                errors.append(f"api: {exc}")

    def worker() -> None:
        token = f"{tag}-w"
        while time.monotonic() < deadline:
            try:
                with session_scope(settings) as s:
                    claims.claim(s, experiment_id, token, timeout_seconds=60, max_attempts=10**9)
                with session_scope(settings) as s:
                    claims.heartbeat(s, experiment_id, token)
                with session_scope(settings) as s:
                    s.get(Experiment, experiment_id)  # read, then write: the failing shape
                    experiments.record_progress(s, experiment_id, {"iteration": 1})
                with session_scope(settings) as s:
                    claims.release(s, experiment_id, token, level_finished=False)
            except Exception as exc:
                errors.append(f"worker: {exc}")

    threads = [threading.Thread(target=api) for _ in range(3)] + [threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_writers_in_threads_never_see_database_is_locked(
    sqlite_settings: Settings,
) -> None:
    errors = _api_and_worker_traffic(sqlite_settings, STRESS_SECONDS, "t")
    assert errors == []


def _process_main(data_dir: str, tag: str, results: Any) -> None:
    dispose_engines()  # never reuse the parent's pool in a forked child
    settings = Settings(data_dir=Path(data_dir), db_busy_timeout_seconds=30)
    try:
        results.put(_api_and_worker_traffic(settings, STRESS_SECONDS, tag))
    except Exception as exc:  # pragma: no cover - reported to the parent
        results.put([f"process: {exc!r}"])


def test_concurrent_writers_in_processes_never_see_database_is_locked(
    sqlite_settings: Settings,
) -> None:
    get_engine(sqlite_settings)  # the tables exist before the children race to create them
    dispose_engines()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [
        context.Process(
            target=_process_main, args=(str(sqlite_settings.data_dir), f"p{i}", results)
        )
        for i in range(3)
    ]
    for child in children:
        child.start()
    errors = [e for _ in children for e in results.get(timeout=60)]
    for child in children:
        child.join(timeout=30)
    assert errors == []
    with session_scope(sqlite_settings) as s:
        assert s.query(Experiment).count() > 3 * 3, "every process wrote"


def test_a_database_from_before_the_queue_column_gets_it(sqlite_settings: Settings) -> None:
    """create_all never alters a table; init_db adds the column an older database lacks."""
    from sqlalchemy import inspect

    from store.db import init_db

    engine = get_engine(sqlite_settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE experiments DROP COLUMN queue")
    assert "queue" not in {c["name"] for c in inspect(engine).get_columns("experiments")}
    init_db(engine)
    init_db(engine)  # idempotent
    assert "queue" in {c["name"] for c in inspect(engine).get_columns("experiments")}
