"""Open mode is safe from the user's own browser: allowed hosts, no cross-origin writes (issue 24).

Found before: ``POST /experiments`` with ``Origin: http://attacker.example`` and
``Content-Type: text/plain`` created an experiment (201), and ``Host: attacker.example`` (DNS
rebinding) was answered 200 by a keyless server on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_service_support import assert_error, tiny_spec

from service.origin import HostPolicy
from store.db import dispose_engines
from store.settings import Settings

BODY = json.dumps(tiny_spec())


def _client(tmp_path: Path, **settings: str) -> TestClient:
    from service.main import create_app

    return TestClient(create_app(Settings(data_dir=tmp_path / "data", **settings)))


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as client:
        yield client
    dispose_engines()


def test_a_foreign_host_is_refused_and_the_machines_names_answer(open_client: TestClient) -> None:
    for path in ("/experiments", "/", "/healthz"):
        answer = open_client.get(path, headers={"Host": "attacker.example"})
        assert_error(answer, 421, "host_not_allowed")
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST", "a.localhost"):
        assert open_client.get("/experiments", headers={"Host": host}).status_code == 200, host


def test_cross_origin_and_non_json_writes_are_refused(open_client: TestClient) -> None:
    attack = {"Origin": "http://attacker.example", "Content-Type": "text/plain"}
    assert_error(
        open_client.post("/experiments", content=BODY, headers=attack), 403, "cross_origin"
    )
    json_from_afar = {"Origin": "http://attacker.example", "Content-Type": "application/json"}
    assert_error(open_client.post("/experiments", content=BODY, headers=json_from_afar), 403)
    assert_error(open_client.post("/experiments", content=BODY, headers={"Origin": "null"}), 403)
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"):
        answer = open_client.post("/experiments", content=BODY, headers={"Content-Type": media})
        assert_error(answer, 415, "unsupported_media_type")
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    assert_error(open_client.delete("/experiments/" + "0" * 32, headers=cross_site), 403)
    assert open_client.get("/experiments").json()["total"] == 0  # nothing was created

    # The server's own pages (same origin) and programs (no Origin) still write.
    own = {"Origin": "http://testserver", "Content-Type": "application/json; charset=utf-8"}
    created = open_client.post("/experiments", content=BODY, headers=own)
    assert created.status_code == 201, created.text
    cancel = open_client.post(f"/experiments/{created.json()['id']}/cancel", headers=own)
    assert cancel.status_code == 200, cancel.text
    # Reads from other origins are not writes: a GET is answered (CORS keeps the body from
    # a foreign page, which is all a read needs).
    assert (
        open_client.get("/experiments", headers={"Origin": "http://x.example"}).status_code == 200
    )


def test_hosts_and_origins_are_configurable(tmp_path: Path) -> None:
    settings = {
        "api_allowed_hosts": "lth.lab.example",
        "api_allowed_origins": "https://dash.lab.example",
    }
    with _client(tmp_path, **settings) as client:
        assert client.get("/experiments", headers={"Host": "lth.lab.example"}).status_code == 200
        assert client.get("/experiments", headers={"Host": "testserver"}).status_code == 421
        headers = {"Host": "127.0.0.1", "Origin": "https://dash.lab.example"}
        assert client.post("/experiments", json=tiny_spec(), headers=headers).status_code == 201
    dispose_engines()


def test_host_policy_of_the_bound_address() -> None:
    def policy(host: str, allowed: str = "") -> HostPolicy:
        return HostPolicy(Settings(api_host=host, api_allowed_hosts=allowed))

    assert policy("192.168.1.5").host_allowed("192.168.1.5:8000")
    assert not policy("192.168.1.5").host_allowed("attacker.example")
    # Bound to every address (keys required there): any host, unless the setting names them.
    assert policy("0.0.0.0").host_allowed("lth.internal:8000")
    assert not policy("0.0.0.0", "lth.internal").host_allowed("attacker.example")
    assert policy("0.0.0.0", "lth.internal").host_allowed("lth.internal:8000")
    assert policy("127.0.0.1", "*").host_allowed("anything.example")


def test_the_interactive_docs_are_off_unless_asked_for(tmp_path) -> None:
    """Found: /docs loaded swagger-ui-dist@5 from a CDN (no SRI) on the web view's origin,
    whose API key sits in sessionStorage."""
    from fastapi.testclient import TestClient

    from service.main import create_app
    from store.settings import Settings

    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 200
    with TestClient(create_app(settings.model_copy(update={"api_docs": True}))) as client:
        assert client.get("/docs").status_code == 200
