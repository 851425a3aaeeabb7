"""The S3 artifact store against a real S3 server (moto in server mode, started here): the
ArtifactStore contract, digests in the objects' metadata, multipart uploads, an upload cut
short, an outage retried with backoff and never taken for a missing object, and the choice
by LTH_ARTIFACTS_URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from s3_servers import BUCKET, CREDENTIALS, client, free_port, moto_server

from lth_core.storage.s3 import S3Store, StoreUnavailable, parse_s3_url
from lth_core.storage.store import CorruptArtifact
from store import artifacts
from store.settings import Settings


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    return endpoint


@pytest.fixture
def store(aws: str, request: pytest.FixtureRequest) -> S3Store:
    return S3Store(BUCKET, f"t/{request.node.name}", client=client(aws))


def test_the_store_contract(store: S3Store) -> None:
    assert not store.exists("a/b.json") and store.list() == []
    store.put("a/b.json", b"one")
    store.put("a/bc.json", b"two")
    store.put("a/c/d.safetensors", b"three")
    assert store.get("a/b.json") == b"one" and store.size("a/c/d.safetensors") == 5
    assert store.list() == ["a/b.json", "a/bc.json", "a/c/d.safetensors"]
    assert store.list("a/c") == ["a/c/d.safetensors"]
    with store.open("a/bc.json") as stream:
        assert stream.read() == b"two"
    assert store.local_path("a/b.json") is None
    scoped = store.scoped("a")
    assert scoped.list() == ["b.json", "bc.json", "c/d.safetensors"]
    assert scoped.describe("b.json") == f"s3://{BUCKET}/{store.prefix}a/b.json"
    store.delete("a/b.json")  # the key alone, not its sibling a/bc.json
    assert store.list() == ["a/bc.json", "a/c/d.safetensors"]
    store.delete("a/c")
    assert store.list() == ["a/bc.json"]
    store.delete()
    assert store.list() == []
    store.delete("gone")  # nothing there: not an error
    with pytest.raises(FileNotFoundError, match="no artifact s3://"):
        store.get("a/b.json")
    with pytest.raises(FileNotFoundError):
        store.size("a/b.json")


def test_the_digest_travels_in_the_metadata_and_every_read_checks_it(store: S3Store) -> None:
    store.put("levels/001/mask.safetensors", b"mask bytes")
    import hashlib

    digest = hashlib.sha256(b"mask bytes").hexdigest()
    assert store.digest("levels/001/mask.safetensors") == digest
    assert store.verify("levels/001/mask.safetensors") == digest
    # The object replaced behind the store's back (bit rot, a stray writer): caught by name.
    store.client.put_object(
        Bucket=BUCKET,
        Key=store.prefix + "levels/001/mask.safetensors",
        Body=b"mask bytez",
        Metadata={"sha256": digest},
    )
    with pytest.raises(CorruptArtifact, match=r"s3://.*levels/001/mask.safetensors is corrupt"):
        store.get("levels/001/mask.safetensors")
    with pytest.raises(CorruptArtifact):
        store.verify("levels/001/mask.safetensors")
    # An object written without a digest (before digests) is read unchecked.
    store.client.put_object(Bucket=BUCKET, Key=store.prefix + "old.json", Body=b"{}")
    assert store.digest("old.json") is None and store.get("old.json") == b"{}"


def test_large_objects_are_uploaded_in_parts(store: S3Store) -> None:
    store.multipart_bytes = 5 << 20
    data = bytes(range(256)) * (11 << 12)  # 11 MiB: three parts
    store.put("big.safetensors", data)
    head = store.client.head_object(Bucket=BUCKET, Key=store.prefix + "big.safetensors")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload's ETag
    assert store.get("big.safetensors") == data


def test_an_upload_cut_short_leaves_no_object(store: S3Store) -> None:
    """A multipart upload that fails mid-way is aborted: nothing a reader could take for the
    finished object, and no parts left behind."""
    store.multipart_bytes, store.retry_seconds = 5 << 20, 0.5
    calls = {"n": 0}

    def fail_second_part(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("host died mid-upload")

    events = store.client.meta.events
    events.register("before-call.s3.UploadPart", fail_second_part)
    try:
        with pytest.raises(RuntimeError, match="mid-upload"):
            store.put("levels/000/runs/ticket.json", b"x" * (11 << 20))
    finally:
        events.unregister("before-call.s3.UploadPart", fail_second_part)
    assert not store.exists("levels/000/runs/ticket.json")
    uploads = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix)
    assert uploads.get("Uploads", []) == []


class Flaky:
    """A client whose first `failures` calls find no server (an outage), then work."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name == "get_paginator":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise EndpointConnectionError(endpoint_url="http://s3.down")
            return attr(*args, **kwargs)

        return call


def test_an_outage_is_retried_with_backoff(store: S3Store) -> None:
    store.put("levels/000/runs/ticket.json", b"{}")
    flaky = S3Store(BUCKET, store.prefix, client=Flaky(store.client, 3), retry_seconds=30)
    started = time.monotonic()
    assert flaky.exists("levels/000/runs/ticket.json")  # finished stays finished
    assert time.monotonic() - started >= 0.2  # it waited between tries
    flaky.client.failures = 2
    flaky.put("levels/000/summary.json", b"{}")
    assert store.get("levels/000/summary.json") == b"{}"


def test_a_store_that_stays_down_is_an_error_not_a_missing_object(tmp_path: Path) -> None:
    down = client(f"http://127.0.0.1:{free_port()}")
    store = S3Store(BUCKET, "x", client=down, retry_seconds=0.5)
    with pytest.raises(StoreUnavailable, match="failed for"):
        store.exists("levels/000/runs/ticket.json")


def test_the_url_chooses_the_store(aws: str, tmp_path: Path) -> None:
    assert parse_s3_url("s3://b/some/prefix/") == ("b", "some/prefix/")
    assert parse_s3_url("s3://b") == ("b", "")
    with pytest.raises(ValueError):
        parse_s3_url("http://b/x")
    local = Settings(data_dir=tmp_path)
    experiment_id = "ab" * 16
    assert artifacts.experiment_store(local, experiment_id).local_path("x") == (
        tmp_path / "experiments" / experiment_id / "x"
    )
    remote = Settings(data_dir=tmp_path, artifacts_url=f"s3://{BUCKET}/deploy")
    store = artifacts.experiment_store(remote, experiment_id)
    store.put("spec.json", b"{}")
    assert (
        store.describe("spec.json") == f"s3://{BUCKET}/deploy/experiments/{experiment_id}/spec.json"
    )
    assert store.local_path("spec.json") is None
    artifacts.remove_experiment(remote, experiment_id)  # deleting deletes its objects
    listed = client(aws).list_objects_v2(
        Bucket=BUCKET, Prefix=f"deploy/experiments/{experiment_id}"
    )
    assert listed.get("KeyCount", 0) == 0
