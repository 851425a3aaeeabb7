"""Resume takes the owner's lock, as submit does (issue 24).

Found before: on PostgreSQL, concurrent resumes of one owner's cancelled experiments passed
the per-owner limit together (12, 11, 11 queued against a limit of 10).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from test_service_support import tiny_spec

from store import api_keys, experiments
from store.db import dispose_engines, session_scope
from store.models import Status
from store.settings import Settings

pytest_plugins = ("test_service_support",)

LIMIT, CANCELLED = 3, 12


def test_concurrent_resumes_stay_within_the_owners_limit(pg_database: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=pg_database, max_active_per_owner=LIMIT
    )
    from service.main import create_app

    with session_scope(settings) as session:
        _, key = api_keys.create_key(session, "carol")
        ids = []
        for _ in range(CANCELLED):
            experiment, _ = experiments.create(session, tiny_spec(), owner="carol")
            experiment.status = Status.CANCELLED
            ids.append(experiment.id)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(create_app(settings)) as client, ThreadPoolExecutor(CANCELLED) as pool:
            codes = list(
                pool.map(
                    lambda i: client.post(f"/experiments/{i}/resume", headers=headers).status_code,
                    ids,
                )
            )
        with session_scope(settings, read_only=True) as session:
            active = experiments.count_active(session, "carol")
    finally:
        with session_scope(settings) as session:
            for experiment_id in ids:
                experiments.get(session, experiment_id).status = Status.CANCELLED  # type: ignore[union-attr]
                experiments.delete_experiment(session, experiment_id)
        dispose_engines()
    assert sorted(codes) == [200] * LIMIT + [429] * (CANCELLED - LIMIT)
    assert active == LIMIT
