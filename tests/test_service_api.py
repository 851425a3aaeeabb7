"""The REST API through HTTP against a real database (SQLite and PostgreSQL): submit, read,
list, cancel, delete, and the error paths."""

from __future__ import annotations

import time
from datetime import datetime

from fastapi.testclient import TestClient
from test_service_support import assert_error, claim_running, submit, tiny_spec

from store import artifacts, broker, experiments
from store.db import session_scope
from store.settings import Settings

# Fixtures (settings, client, pg_database, engine_run) shared by the service tests.
pytest_plugins = ("test_service_support",)


def test_submit_fills_every_field_and_enqueues(client: TestClient, settings: Settings) -> None:
    response = client.post("/experiments", json={"model": "lenet_300_100"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/experiments/{body['id']}"
    assert len(body["id"]) == 32 and body["status"] == "queued"
    # The paper's defaults are filled in and echoed.
    assert body["spec"]["training"]["optimizer"] == "adam"
    assert body["spec"]["training"]["iterations"] == 50_000
    assert body["spec"]["dataset"]["name"] == "mnist"
    assert body["spec"]["ticket_tolerance"] == 0.0
    assert body["name"] == "lenet_300_100-mnist"
    assert body["progress"] == {
        "level": None,
        "levels": 21,
        "levels_finished": 0,
        "kind": None,
        "kinds": None,
        "runs": None,
        "iteration": None,
        "iterations": None,
        "waiting": "no worker consumes queue lth: no worker is running; it starts when one "
        "does (`lth worker --queues lth`, or `lth serve`)",
        "metrics": None,
        "elapsed_seconds": None,
        "iterations_per_second": None,
        "level_eta_seconds": None,
        "eta_seconds": None,
    }
    assert body["levels"] == [] and body["ticket"] is None and body["error"] is None
    assert datetime.fromisoformat(body["created_at"]).utcoffset().total_seconds() == 0
    assert body["started_at"] is None and body["finished_at"] is None
    # Committed first, then enqueued: the message is in the (embedded) broker.
    assert broker.queue_depth(settings) == 1
    assert client.get(response.headers["Location"]).json() == body


def test_submit_to_a_named_queue_keeps_the_queue_with_the_experiment(
    client: TestClient, settings: Settings
) -> None:
    body = submit(client, tiny_spec(), params={"queue": "lth.gpu"})
    assert body["queue"] == "lth.gpu"
    assert broker.queue_depth(settings, ("lth.gpu",)) == 1
    assert broker.queue_depth(settings, ("lth",)) == 0
    with session_scope(settings) as session:
        assert experiments.get(session, body["id"]).queue == "lth.gpu"
    assert submit(client, tiny_spec(seed=2))["queue"] == "lth", "the default queue"
    error = assert_error(
        client.post("/experiments", json=tiny_spec(), params={"queue": "no spaces"}), 422
    )
    assert ["query", "queue"] in [d["loc"] for d in error["details"]]


def test_idempotency_key_returns_the_same_experiment(
    client: TestClient, settings: Settings
) -> None:
    headers = {"Idempotency-Key": "retry-me-1"}
    first = client.post("/experiments", json=tiny_spec(), headers=headers)
    second = client.post("/experiments", json=tiny_spec(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert client.get("/experiments").json()["total"] == 1
    assert broker.queue_depth(settings) == 1  # the replay sent nothing

    other = client.post("/experiments", json=tiny_spec(seed=7), headers=headers)
    error = assert_error(other, 422, "idempotency_key_reused")
    assert first.json()["id"] in error["message"]
    assert error["details"][0]["loc"] == ["header", "Idempotency-Key"]

    fresh = client.post("/experiments", json=tiny_spec(), headers={"Idempotency-Key": "k2"})
    assert fresh.json()["id"] != first.json()["id"]


def test_list_is_newest_first_and_paginated(client: TestClient) -> None:
    ids = [submit(client, tiny_spec(seed=i))["id"] for i in range(5)]
    page = client.get("/experiments", params={"limit": 2}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 0
    seen = []
    for offset in (0, 2, 4):
        items = client.get("/experiments", params={"limit": 2, "offset": offset}).json()["items"]
        seen += [e["id"] for e in items]
    assert seen == list(reversed(ids))
    assert client.get("/experiments", params={"offset": 10}).json()["items"] == []


def test_list_filters_by_status(client: TestClient) -> None:
    ids = [submit(client, tiny_spec(seed=i))["id"] for i in range(3)]
    client.post(f"/experiments/{ids[1]}/cancel")
    cancelled = client.get("/experiments", params={"status": "cancelled"}).json()
    assert [e["id"] for e in cancelled["items"]] == [ids[1]] and cancelled["total"] == 1
    queued = client.get("/experiments", params={"status": "queued"}).json()
    assert {e["id"] for e in queued["items"]} == {ids[0], ids[2]}
    error = assert_error(client.get("/experiments", params={"status": "done"}), 422)
    assert error["details"][0]["loc"] == ["query", "status"]
    error = assert_error(client.get("/experiments", params={"limit": 0}), 422)
    assert error["details"][0]["loc"] == ["query", "limit"]


def test_cancel_queued_never_starts(client: TestClient, settings: Settings) -> None:
    experiment = submit(client)
    response = client.post(f"/experiments/{experiment['id']}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled" and body["cancel_requested"] is True
    assert body["finished_at"] is not None
    assert client.post(f"/experiments/{experiment['id']}/cancel").json()["status"] == "cancelled"
    with session_scope(settings) as session:  # a late worker cannot start it
        assert not claim_running(session, experiment["id"])


def test_cancel_running_sets_the_flag_and_finished_is_a_conflict(
    client: TestClient, settings: Settings
) -> None:
    experiment = submit(client)
    with session_scope(settings) as session:
        assert claim_running(session, experiment["id"], "t")
    body = client.post(f"/experiments/{experiment['id']}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] is True
    with session_scope(settings) as session:
        assert experiments.mark_succeeded(session, experiment["id"])
    assert_error(client.post(f"/experiments/{experiment['id']}/cancel"), 409, "already_finished")


def test_delete_only_finished_and_removes_artifacts(client: TestClient, settings: Settings) -> None:
    experiment = submit(client)
    directory = artifacts.experiment_dir(settings, experiment["id"])
    (directory / "levels").mkdir(parents=True)
    (directory / "spec.json").write_text("{}")
    assert_error(client.delete(f"/experiments/{experiment['id']}"), 409, "not_finished")
    client.post(f"/experiments/{experiment['id']}/cancel")
    response = client.delete(f"/experiments/{experiment['id']}")
    assert response.status_code == 204 and response.content == b""
    assert not directory.exists()
    assert_error(client.get(f"/experiments/{experiment['id']}"), 404, "not_found")
    assert_error(client.delete(f"/experiments/{experiment['id']}"), 404)


def test_unknown_ids_and_paths_are_404(client: TestClient) -> None:
    unknown = "0" * 32
    for method, path in [
        ("GET", f"/experiments/{unknown}"),
        ("POST", f"/experiments/{unknown}/cancel"),
        ("DELETE", f"/experiments/{unknown}"),
        ("GET", f"/experiments/{unknown}/ticket"),
        ("GET", f"/experiments/{unknown}/levels/0/mask"),
        ("GET", f"/experiments/{unknown}/levels/0/metrics"),
        ("GET", "/experiments/not-an-id"),
        ("GET", "/experiments/..%2F..%2Fetc/ticket"),
        ("GET", "/nothing-here"),
    ]:
        assert_error(client.request(method, path), 404)
    dashed = submit(client)["id"]
    as_uuid = f"{dashed[:8]}-{dashed[8:12]}-{dashed[12:16]}-{dashed[16:20]}-{dashed[20:]}"
    assert client.get(f"/experiments/{as_uuid}").json()["id"] == dashed


def test_invalid_specs_are_422_naming_the_field(client: TestClient) -> None:
    spec = tiny_spec()
    spec["training"]["learning_rate"] = -1
    error = assert_error(client.post("/experiments", json=spec), 422, "invalid_spec")
    assert error["details"][0]["loc"] == ["body", "training", "learning_rate"]
    assert "training.learning_rate" in error["message"]

    spec = tiny_spec()
    spec["training"]["learning_rte"] = 0.1
    error = assert_error(client.post("/experiments", json=spec), 422, "invalid_spec")
    assert error["details"][0]["loc"] == ["body", "training", "learning_rte"]

    error = assert_error(client.post("/experiments", json={"model": "alexnet"}), 422)
    assert error["details"][0]["loc"] == ["body", "model"]
    error = assert_error(client.post("/experiments", json={}), 422)
    assert error["details"][0]["loc"] == ["body", "model"]

    for raw in (b"{not json", b"", b"[1, 2]", b'"spec"', b"[" * 100_000):
        response = client.post(
            "/experiments", content=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 422)
    long_key = {"Idempotency-Key": "k" * 300}
    error = assert_error(client.post("/experiments", json=tiny_spec(), headers=long_key), 422)
    assert error["details"][0]["loc"] == ["header", "Idempotency-Key"]
    assert client.get("/experiments").json()["total"] == 0


def test_progress_written_by_the_worker_is_shown(client: TestClient, settings: Settings) -> None:
    experiment = submit(client)
    with session_scope(settings) as session:
        claim_running(session, experiment["id"])
        experiments.record_progress(
            session,
            experiment["id"],
            {
                "level": 1,
                "kind": "random_reinit",
                "iteration": 25,
                "iterations": 50,
                "metrics": {"test_accuracy": 0.5, "val_loss": float("nan")},
                "anything_else": [1, 2],
                # What worker.progress writes for the ETA (lth_core.results.eta), 2 s ago.
                "iterations_per_second": 12.5,
                "level_eta_seconds": 40.0,
                "eta_seconds": 300.0,
                "written_at": time.time() - 2.0,
            },
        )
    body = client.get(f"/experiments/{experiment['id']}").json()
    assert body["status"] == "running" and body["started_at"] is not None
    assert body["attempts"] == 1
    progress = body["progress"]
    assert 0 <= progress.pop("elapsed_seconds") < 60
    # The estimates are aged by the time since the worker wrote them.
    assert 37.0 <= progress.pop("level_eta_seconds") <= 38.1
    assert 297.0 <= progress.pop("eta_seconds") <= 298.1
    assert progress == {
        "level": 1,
        "levels": 2,
        "levels_finished": 0,
        "kind": "random_reinit",
        "kinds": None,
        "runs": ["ticket", "random_reinit"],  # the level's, as the spec trains them
        "iteration": 25,
        "iterations": 50,
        "metrics": {"test_accuracy": 0.5},
        "iterations_per_second": 12.5,
        "waiting": None,  # held by a worker
    }


def test_failed_experiment_shows_its_error(client: TestClient, settings: Settings) -> None:
    experiment = submit(client)
    with session_scope(settings) as session:
        claim_running(session, experiment["id"])
        experiments.mark_failed(session, experiment["id"], "OutOfMemoryError", "CUDA OOM")
    body = client.get(f"/experiments/{experiment['id']}").json()
    assert body["status"] == "failed"
    assert body["error"] == {"type": "OutOfMemoryError", "message": "CUDA OOM"}


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok"},
        "queues": {"lth": [], "lth.gpu": [], "lth.cpu": []},  # no worker runs
        "unconsumed": [],  # and no experiment waits
    }
