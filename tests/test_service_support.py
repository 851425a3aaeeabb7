"""Shared fixtures and helpers of the service and store tests (no tests here).

Imported by ``tests/test_service_*.py`` and ``tests/test_store_*.py``. Each test gets a fresh
data directory and a clean database: a SQLite file in the test's tmp dir, or a PostgreSQL
database created for this test session (uniquely named, so engineers running the suite
concurrently never share one) and dropped at the end.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from store import broker, claims, experiments
from store.db import dispose_engines, session_scope
from store.lease import LeaseOutcome
from store.models import ApiKey, Experiment, Level, WorkerPresence
from store.settings import Settings

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"

TINY_SPEC: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": {
        "name": "synthetic",
        "validation_size": 200,
        "synthetic": {"train_size": 1000, "test_size": 200},
    },
    "training": {"iterations": 50, "eval_every": 25},
    "pruning": {"levels": 1},
}


def tiny_spec(**changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(TINY_SPEC))
    spec.update(changes)
    return spec


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; skipped if the server is unreachable."""
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"lth_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {PG_SERVER} is unreachable: {exc}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings over a fresh data dir and an empty database of the parametrized kind."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    s = Settings(data_dir=tmp_path / "data", database_url=url)
    _empty(s)
    yield s
    _empty(s)
    dispose_engines()
    broker.close_clients()


def _empty(s: Settings) -> None:
    if s.database_url is None or make_url(s.database_url).get_backend_name() == "sqlite":
        return
    with session_scope(s) as session:
        session.execute(delete(Level))
        session.execute(delete(Experiment))
        session.execute(delete(ApiKey))
        session.execute(delete(WorkerPresence))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from service.consumers import CONSUMERS
    from service.main import create_app

    CONSUMERS.clear()  # read afresh: another test's workers are not this one's
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def submit(client: TestClient, spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    response = client.post("/experiments", json=spec or tiny_spec(), **kw)
    assert response.status_code == 201, response.text
    return response.json()


def claim_running(session: Session, experiment_id: str, token: str = "test") -> bool:
    """Marks an experiment running the way a worker does (store.claims.claim: a claim token,
    a heartbeat, one more attempt); False if it is finished, cancelled or unknown."""
    outcome = claims.claim(session, experiment_id, token, timeout_seconds=60.0, max_attempts=1_000)
    return outcome is LeaseOutcome.CLAIMED


def assert_error(response: Any, status: int, error_type: str | None = None) -> dict[str, Any]:
    """The stable error shape, with the expected status (and type)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "details"}
    assert error["message"]
    if error_type is not None:
        assert error["type"] == error_type, error
    return error


# ----------------------------------------------------------------------------- finished runs


@dataclass(frozen=True)
class EngineRun:
    """One real run of the engine on TINY_SPEC, reused by every test that needs artifacts."""

    out_dir: Path
    spec: dict[str, Any]
    summaries: list[dict[str, Any]]


def run_engine(spec_json: dict[str, Any], out: Path) -> EngineRun:
    """lth_core's engine on `spec_json` into `out`, on CPU (skipped without torch)."""
    torch = pytest.importorskip("torch")
    from lth_core.experiment import Experiment as Engine
    from lth_core.spec import parse_spec

    torch.set_num_threads(2)
    spec = parse_spec(spec_json)
    summaries = Engine(spec, out, device="cpu").run()
    return EngineRun(out, spec.model_dump(mode="json"), summaries)


@pytest.fixture(scope="session")
def engine_run(tmp_path_factory: pytest.TempPathFactory) -> EngineRun:
    """Runs lth_core's engine once (a few seconds on CPU): artifacts exactly as a worker
    leaves them, without needing a worker process."""
    return run_engine(TINY_SPEC, tmp_path_factory.mktemp("engine") / "out")


def finish_like_worker(settings: Settings, experiment_id: str, run: EngineRun) -> None:
    """What the worker does for a finished experiment: artifacts on disk, levels and final
    status in the database."""
    from store.artifacts import experiment_dir

    shutil.copytree(run.out_dir, experiment_dir(settings, experiment_id), dirs_exist_ok=True)
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id)
        for summary in run.summaries:
            experiments.record_level(session, experiment_id, summary["level"], summary)
        assert experiments.mark_succeeded(session, experiment_id)
