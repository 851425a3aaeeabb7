"""The database going away and coming back, through a TCP proxy in front of PostgreSQL.

While it is down: ``/readyz`` says so, every request answers 503 with a message (also those
that need a key checked), nothing half-done is stored. When it is back: every queued
experiment is still there and still in the broker, and a retried submission lands once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from test_service_support import assert_error, tiny_spec

from service.main import create_app
from store import api_keys, broker
from store.db import dispose_engines, session_scope
from store.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from tcp_proxy import TcpProxy  # bench/ holds scripts, not a package

pytest_plugins = ("test_service_support",)


@pytest.fixture
def proxied(pg_database: str, tmp_path: Path) -> Iterator[tuple[Settings, TcpProxy]]:
    url = make_url(pg_database)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.up()
    settings = Settings(
        data_dir=tmp_path, database_url=url.set(port=proxy.port).render_as_string(False)
    )
    try:
        yield settings, proxy
    finally:
        proxy.down()
        dispose_engines()
        broker.close_clients()


def test_database_down_then_back_loses_nothing(proxied: tuple[Settings, TcpProxy]) -> None:
    settings, proxy = proxied
    with session_scope(settings) as session:
        _, key = api_keys.create_key(session, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings)) as client:
        queued = [
            client.post("/experiments", json=tiny_spec(seed=i), headers=auth).json()["id"]
            for i in range(2)
        ]
        proxy.down()
        retry = {**auth, "Idempotency-Key": "during-outage"}
        for method, path, kwargs in [
            ("GET", "/experiments", {"headers": auth}),
            ("GET", f"/experiments/{queued[0]}", {"headers": auth}),
            ("GET", f"/experiments/{queued[0]}/ticket", {"headers": auth}),
            ("POST", f"/experiments/{queued[0]}/cancel", {"headers": auth}),
            ("POST", "/experiments", {"headers": retry, "json": tiny_spec(seed=9)}),
            ("GET", "/experiments", {}),  # even deciding that a key is needed takes the DB
        ]:
            response = client.request(method, path, **kwargs)
            error = assert_error(response, 503, "database_unavailable")
            assert "database is unavailable" in error["message"]
            assert response.headers["Retry-After"]
        error = assert_error(client.get("/readyz"), 503, "not_ready")
        assert ["database"] in [d["loc"] for d in error["details"]]
        assert client.get("/healthz").status_code == 200

        proxy.up()
        listing = client.get("/experiments", headers=auth).json()
        assert {e["id"]: e["status"] for e in listing["items"]} == dict.fromkeys(queued, "queued")
        assert broker.queue_depth(settings) == 2  # both still on their way to a worker
        # The client's retry of the refused submission lands exactly once.
        first = client.post("/experiments", json=tiny_spec(seed=9), headers=retry)
        again = client.post("/experiments", json=tiny_spec(seed=9), headers=retry)
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        assert client.get("/experiments", headers=auth).json()["total"] == 3
        assert client.get("/readyz").status_code == 200
