"""API keys and owners on every endpoint: no key, a wrong one, a revoked one, another owner's
experiment (404, exactly like an unknown id), an admin; and open mode only on loopback."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from test_service_support import EngineRun, assert_error, finish_like_worker, submit, tiny_spec

from service.main import create_app
from store import api_keys, artifacts, broker
from store.db import session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)


@dataclass
class Keys:
    alice: str
    bob: str
    admin: str
    revoked: str


@pytest.fixture
def keys(settings: Settings) -> Keys:
    with session_scope(settings) as session:
        made = {
            name: api_keys.create_key(session, owner, admin=admin)
            for name, owner, admin in [
                ("alice", "alice", False),
                ("bob", "bob", False),
                ("admin", "ops", True),
                ("revoked", "alice", False),
            ]
        }
        api_keys.revoke(session, made["revoked"][0].id)
    return Keys(**{name: key for name, (_, key) in made.items()})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def endpoints(experiment_id: str) -> list[tuple[str, str, dict]]:
    """Every experiment endpoint, with a request that would succeed for the owner."""
    return [
        ("GET", "/experiments", {}),
        ("POST", "/experiments", {"json": tiny_spec(seed=99)}),
        ("POST", "/experiments/estimate", {"json": tiny_spec(seed=99)}),
        ("GET", f"/experiments/{experiment_id}", {}),
        ("GET", f"/experiments/{experiment_id}/levels/1/metrics", {}),
        ("GET", f"/experiments/{experiment_id}/levels/1/mask", {}),
        ("GET", f"/experiments/{experiment_id}/ticket", {}),
        ("GET", f"/experiments/{experiment_id}/plots/early_stop_accuracy.png", {}),
        ("GET", f"/experiments/{experiment_id}/levels.csv", {}),
        ("GET", f"/compare?ids={experiment_id}", {}),
        ("GET", f"/compare/plots/accuracy_curves.json?ids={experiment_id}", {}),
        ("POST", f"/experiments/{experiment_id}/cancel", {}),
        ("DELETE", f"/experiments/{experiment_id}", {}),
    ]


def experiment_id_free(path: str) -> bool:
    """A route that names no experiment (submit, estimate): another owner has nothing there."""
    return path in ("/experiments", "/experiments/estimate")


@pytest.fixture
def finished(client: TestClient, settings: Settings, keys: Keys, engine_run: EngineRun) -> str:
    """A succeeded experiment of alice's, with every artifact on disk."""
    experiment_id = submit(client, headers=bearer(keys.alice))["id"]
    finish_like_worker(settings, experiment_id, engine_run)
    return experiment_id


def test_no_wrong_malformed_or_revoked_key_is_401_everywhere(
    client: TestClient, keys: Keys, finished: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = keys.alice[:-4] + ("AAAA" if not keys.alice.endswith("AAAA") else "BBBB")
    unknown = "lth_000000000000_" + "x" * 43
    cases = [
        ({}, "needs a key"),
        (bearer(wrong), "not valid"),
        (bearer(unknown), "not valid"),
        (bearer(keys.revoked), "not valid"),
        (bearer("not-a-key"), "not valid"),
        ({"Authorization": f"Basic {keys.alice}"}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
    ]
    for method, path, kwargs in endpoints(finished):
        for headers, says in cases:
            response = client.request(method, path, headers=headers, **kwargs)
            error = assert_error(response, 401, "unauthorized")
            assert says in error["message"], (method, path, error)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            for key in (keys.alice, wrong, keys.revoked):
                assert key not in response.text
                assert key[-43:] not in response.text
    # Nothing was created, cancelled or deleted by any of them; no key reached the log.
    assert client.get("/experiments", headers=bearer(keys.admin)).json()["total"] == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for key in (keys.alice, wrong, keys.revoked, unknown):
        assert key[-43:] not in logged


def test_another_owners_experiment_is_404_on_every_endpoint(
    client: TestClient, settings: Settings, keys: Keys, finished: str
) -> None:
    unknown = "f" * 32
    for method, path, kwargs in endpoints(finished):
        if experiment_id_free(path):
            continue
        theirs = client.request(method, path, headers=bearer(keys.bob), **kwargs)
        nobody = client.request(
            method, path.replace(finished, unknown), headers=bearer(keys.bob), **kwargs
        )
        error = assert_error(theirs, 404)
        # Indistinguishable from an id that does not exist: nothing leaks that it does.
        other = assert_error(nobody, 404)
        other["message"] = other["message"].replace(unknown, finished)
        assert error == other, (method, path)
    # Mask reuse from it is refused the same way, and bob's listing does not show it.
    spec = tiny_spec(mask={"experiment_id": finished, "level": 1})
    error = assert_error(
        client.post("/experiments", json=spec, headers=bearer(keys.bob)),
        404,
        "mask_source_not_found",
    )
    estimated = client.post("/experiments/estimate", json=spec, headers=bearer(keys.bob))
    assert assert_error(estimated, 404, "mask_source_not_found") == error
    assert client.get("/experiments", headers=bearer(keys.bob)).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
    # Still there, still succeeded, files untouched.
    body = client.get(f"/experiments/{finished}", headers=bearer(keys.alice)).json()
    assert body["status"] == "succeeded" and body["cancel_requested"] is False
    assert artifacts.ticket_path(settings, finished).is_file()


def test_owner_gets_everything_of_their_own(client: TestClient, keys: Keys, finished: str) -> None:
    mine = bearer(keys.alice)
    body = client.get(f"/experiments/{finished}", headers=mine).json()
    assert body["owner"] == "alice"
    for path in ("levels/1/metrics", "levels/1/mask", "ticket"):
        assert client.get(f"/experiments/{finished}/{path}", headers=mine).status_code == 200
    reused = client.post(
        "/experiments", json=tiny_spec(mask={"experiment_id": finished, "level": 1}), headers=mine
    )
    assert reused.status_code == 201, reused.text
    assert reused.json()["owner"] == "alice"
    assert (
        client.post(f"/experiments/{reused.json()['id']}/cancel", headers=mine).status_code == 200
    )
    assert client.delete(f"/experiments/{reused.json()['id']}", headers=mine).status_code == 204
    listing = client.get("/experiments", headers=mine).json()
    assert [e["id"] for e in listing["items"]] == [finished]


def test_admin_sees_and_manages_every_owners_experiments(
    client: TestClient, keys: Keys, finished: str
) -> None:
    bobs = submit(client, tiny_spec(seed=5), headers=bearer(keys.bob))["id"]
    admin = bearer(keys.admin)
    listing = client.get("/experiments", headers=admin).json()
    assert {e["id"]: e["owner"] for e in listing["items"]} == {finished: "alice", bobs: "bob"}
    assert client.get("/experiments", headers=bearer(keys.bob)).json()["total"] == 1
    for path in ("", "/levels/1/metrics", "/levels/1/mask", "/ticket"):
        assert client.get(f"/experiments/{finished}{path}", headers=admin).status_code == 200
    # The admin's own submissions are the admin's; the admin may reuse anyone's mask.
    spec = tiny_spec(mask={"experiment_id": finished, "level": 1})
    own = client.post("/experiments", json=spec, headers=admin)
    assert own.status_code == 201 and own.json()["owner"] == "ops"
    assert client.post(f"/experiments/{bobs}/cancel", headers=admin).json()["status"] == "cancelled"
    assert client.delete(f"/experiments/{bobs}", headers=admin).status_code == 204
    assert_error(client.get(f"/experiments/{bobs}", headers=bearer(keys.bob)), 404)


def test_revoking_a_key_takes_effect_on_the_next_request(
    client: TestClient, settings: Settings, keys: Keys
) -> None:
    with session_scope(settings) as session:
        row, key = api_keys.create_key(session, "carol")
    assert client.get("/experiments", headers=bearer(key)).status_code == 200
    with session_scope(settings) as session:
        assert api_keys.revoke(session, row.id)
        assert not api_keys.revoke(session, row.id)
    assert_error(client.get("/experiments", headers=bearer(key)), 401, "unauthorized")


def test_health_needs_no_key(client: TestClient, keys: Keys) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_open_mode_only_without_keys_and_only_on_loopback(tmp_path) -> None:
    loopback = Settings(data_dir=tmp_path / "a")
    try:
        with TestClient(create_app(loopback)) as client:
            opened = submit(client)
            assert opened["owner"] is None
            assert client.get("/experiments").json()["total"] == 1
            # The first key closes it, at once, for requests without one.
            with session_scope(loopback) as session:
                _, key = api_keys.create_key(session, "alice")
            assert_error(client.get("/experiments"), 401, "unauthorized")
            assert client.get("/experiments", headers=bearer(key)).json()["total"] == 0

        public = Settings(data_dir=tmp_path / "b", api_host="0.0.0.0")
        with TestClient(create_app(public)) as client:
            error = assert_error(client.get("/experiments"), 401, "unauthorized")
            assert "0.0.0.0" in error["message"] and "lth keys create" in error["message"]
            assert_error(client.post("/experiments", json=tiny_spec()), 401)
            assert client.get("/healthz").status_code == 200
    finally:
        from store.db import dispose_engines

        dispose_engines()
        broker.close_clients()


def test_keys_are_stored_as_hashes_and_compared_in_constant_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    from sqlalchemy import text

    with session_scope(settings) as session:
        row, key = api_keys.create_key(session, "dave", admin=True)
    with session_scope(settings) as session:
        dumped = str(session.execute(text("SELECT * FROM api_keys")).all())
    secret = key.split("_", 2)[2]
    assert key not in dumped and secret not in dumped
    assert key.startswith(f"lth_{row.id}_") and len(secret) == 43

    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    with session_scope(settings) as session:
        assert api_keys.authenticate(session, key) == api_keys.Principal("dave", True, row.id)
        tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
        assert api_keys.authenticate(session, tampered) is None
        assert api_keys.authenticate(session, f"lth_{'0' * 12}_{'a' * 43}") is None
    assert len(compared) == 3  # every well-formed key, known id or not, is compared


def test_owner_names_are_checked() -> None:
    for bad in ("", " alice", "a/b", "../x", "x" * 201, "al\nice"):
        with pytest.raises(ValueError):
            api_keys.check_owner(bad)
    assert api_keys.check_owner("team.ml-1@example") == "team.ml-1@example"
