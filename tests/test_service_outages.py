"""A broker or database that is down: submissions are never lost, and nothing answers 500."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_service_support import assert_error, tiny_spec

from service.main import create_app
from store import broker
from store.db import dispose_engines
from store.settings import Settings


def test_broker_down_still_accepts_and_readyz_says_so(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    try:
        with TestClient(create_app(settings)) as client:
            response = client.post("/experiments", json=tiny_spec())
            assert response.status_code == 201, response.text
            experiment_id = response.json()["id"]
            # Stored and still queued: the worker's reconciler sends it once the broker is back.
            assert client.get(f"/experiments/{experiment_id}").json()["status"] == "queued"
            error = assert_error(client.get("/readyz"), 503, "not_ready")
            assert [d["loc"] for d in error["details"]] == [["broker"]]
    finally:
        dispose_engines()
        broker.close_clients()


def test_database_down_is_503_with_a_message(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql://postgres@127.0.0.1:1/lth")
    try:
        with TestClient(create_app(settings)) as client:
            for method, path in [
                ("GET", "/experiments"),
                ("GET", f"/experiments/{'a' * 32}"),
                ("POST", "/experiments"),
            ]:
                kwargs = {"json": tiny_spec()} if method == "POST" else {}
                error = assert_error(
                    client.request(method, path, **kwargs), 503, "database_unavailable"
                )
                assert "database" in error["message"]
            error = assert_error(client.get("/readyz"), 503, "not_ready")
            assert ["database"] in [d["loc"] for d in error["details"]]
            assert client.get("/healthz").status_code == 200
    finally:
        dispose_engines()
        broker.close_clients()
