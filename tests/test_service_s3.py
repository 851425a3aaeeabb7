"""The API over an S3 artifact store (moto in server mode, started here) and the digests sent
with every download: a download streams from the store with its sha-256 (ETag, Repr-Digest)
or redirects to a presigned URL; listings and figures read the store; deleting an experiment
deletes its objects; a corrupt artifact is refused naming the file and the experiment."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from s3_servers import BUCKET, CREDENTIALS, client, moto_server
from test_service_support import EngineRun, assert_error, finish_like_worker, submit, tiny_spec

from lth_core.storage.store import CorruptArtifact, LocalStore
from store import artifacts
from store.db import dispose_engines
from store.settings import Settings

pytest_plugins = ("test_service_support",)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def s3_settings(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    yield Settings(data_dir=tmp_path / "data", artifacts_url=f"s3://{BUCKET}/{tmp_path.name}")
    dispose_engines()


@pytest.fixture
def s3_client(s3_settings: Settings) -> Iterator[TestClient]:
    from service.main import create_app

    with TestClient(create_app(s3_settings)) as test_client:
        yield test_client


def _upload(settings: Settings, experiment_id: str, run: EngineRun) -> None:
    """The engine's folder into the experiment's store (as a worker on another host left it)."""
    source, store = LocalStore(run.out_dir), artifacts.experiment_store(settings, experiment_id)
    for key in source.list():
        store.put(key, source.get(key))


def _finished_in_s3(client_: TestClient, settings: Settings, run: EngineRun) -> str:
    experiment_id = submit(client_, tiny_spec())["id"]
    _upload(settings, experiment_id, run)
    local = Settings(
        data_dir=settings.data_dir / "elsewhere", database_url=settings.resolved_database_url
    )
    finish_like_worker(local, experiment_id, run)  # the database rows; its folder is elsewhere
    return experiment_id


def _assert_digest_headers(response: httpx.Response, content: bytes) -> None:
    digest = hashlib.sha256(content).digest()
    assert response.headers["etag"] == f'"{digest.hex()}"'
    assert response.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"


def test_downloads_listings_and_figures_read_the_store(
    s3_client: TestClient, s3_settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = _finished_in_s3(s3_client, s3_settings, engine_run)
    assert not artifacts.experiment_dir(s3_settings, experiment_id).exists()
    ticket = s3_client.get(f"/experiments/{experiment_id}/ticket")
    assert ticket.status_code == 200
    assert ticket.content == (engine_run.out_dir / "ticket.safetensors").read_bytes()
    _assert_digest_headers(ticket, ticket.content)
    mask = s3_client.get(f"/experiments/{experiment_id}/levels/1/mask")
    assert mask.content == (engine_run.out_dir / "levels/001/mask.safetensors").read_bytes()
    metrics = s3_client.get(f"/experiments/{experiment_id}/levels/1/metrics").json()
    assert set(metrics["runs"]) == {"ticket", "random_reinit"}
    figure = s3_client.get(f"/experiments/{experiment_id}/plots/accuracy_curves.json")
    assert figure.status_code == 200
    assert s3_client.delete(f"/experiments/{experiment_id}").status_code in (200, 204)
    listed = client(s3_settings_endpoint()).list_objects_v2(
        Bucket=BUCKET,
        Prefix=f"{s3_settings.artifacts_url.split('/', 3)[3]}/experiments/{experiment_id}",
    )
    assert listed.get("KeyCount", 0) == 0


def s3_settings_endpoint() -> str:
    import os

    return os.environ["AWS_ENDPOINT_URL"]


def test_downloads_can_redirect_to_a_presigned_url(
    s3_client: TestClient, s3_settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = _finished_in_s3(s3_client, s3_settings, engine_run)
    s3_client.app.state.settings = s3_settings  # type: ignore[attr-defined]
    s3_settings.artifacts_redirect_seconds = 60
    response = s3_client.get(f"/experiments/{experiment_id}/ticket", follow_redirects=False)
    assert response.status_code == 307, response.text
    content = (engine_run.out_dir / "ticket.safetensors").read_bytes()
    _assert_digest_headers(response, content)
    assert httpx.get(response.headers["location"]).content == content


def test_a_corrupt_object_is_not_sent(
    s3_client: TestClient, s3_settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = _finished_in_s3(s3_client, s3_settings, engine_run)
    store = artifacts.experiment_store(s3_settings, experiment_id)
    key = "levels/001/mask.safetensors"
    data = bytearray(store.get(key))
    data[-3] ^= 1
    store.client.put_object(  # type: ignore[attr-defined]
        Bucket=BUCKET,
        Key=store.prefix + key,
        Body=bytes(data),
        Metadata={"sha256": store.digest(key)},  # type: ignore[attr-defined]
    )
    # Found while streaming: the stream is cut short (a real client gets fewer bytes than
    # Content-Length; the test client re-raises the server's error, which names the file).
    with pytest.raises(CorruptArtifact, match=f"level 1 of experiment {experiment_id}"):
        s3_client.get(f"/experiments/{experiment_id}/levels/1/mask")


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_corrupt_local_file_is_refused_naming_it(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    """Found in issue 24: a corrupted mask was served 200, byte for byte."""
    experiment_id = submit(client, tiny_spec())["id"]
    finish_like_worker(settings, experiment_id, engine_run)
    good = client.get(f"/experiments/{experiment_id}/levels/1/mask")
    _assert_digest_headers(good, good.content)
    path = artifacts.mask_path(settings, experiment_id, 1)
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    error = assert_error(
        client.get(f"/experiments/{experiment_id}/levels/1/mask"), 500, "artifact_corrupt"
    )
    assert experiment_id in error["message"] and "levels/001/mask.safetensors" in error["message"]
