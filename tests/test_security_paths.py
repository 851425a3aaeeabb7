"""Ids and level numbers never steer a filesystem path; no pickle where a user's bytes reach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_service_support import EngineRun, finish_like_worker, submit, tiny_spec

from store import artifacts
from store.settings import Settings

pytest_plugins = ("test_service_support",)

ROOT = Path(__file__).resolve().parents[1]

TRAVERSALS = [
    "..",
    "../..",
    "..%2F..%2Fsecret",
    "%2e%2e%2f%2e%2e%2fsecret",
    "....//....//secret",
    "..%5c..%5csecret",
    "%2Fetc%2Fpasswd",
    "a" * 31 + "%00",
    "G" * 32,  # not hex: not an id (upper-case hex is one: ids match case-insensitively)
    "0" * 31 + "/",
    "0" * 32 + "%2F..",
    "%252e%252e%252fsecret",
]


@pytest.fixture
def planted(settings: Settings) -> Path:
    """A file just outside the experiments directory that traversal would reach."""
    secret = settings.data_dir / "secret"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"SECRET-BYTES")
    (settings.data_dir / "ticket.safetensors").write_bytes(b"SECRET-BYTES")
    return secret


def test_ids_that_are_not_ids_never_reach_the_disk(client: TestClient, planted: Path) -> None:
    for bad in TRAVERSALS:
        for method, suffix in [
            ("GET", ""),
            ("GET", "/ticket"),
            ("GET", "/levels/0/mask"),
            ("GET", "/levels/0/metrics"),
            ("POST", "/cancel"),
            ("DELETE", ""),
        ]:
            response = client.request(method, f"/experiments/{bad}{suffix}")
            if response.request.url.path == "/" and method == "GET":
                # The client resolved `/experiments/..` to `/` (RFC 3986 dot segments): the
                # web view's page, which holds no data.
                assert response.headers["content-type"].startswith("text/html")
                continue
            assert response.status_code in (404, 405, 422), (bad, suffix, response.text)
            assert b"SECRET-BYTES" not in response.content
    assert planted.read_bytes() == b"SECRET-BYTES"  # DELETE removed nothing


def test_level_numbers_never_reach_the_disk(
    client: TestClient, settings: Settings, engine_run: EngineRun, planted: Path
) -> None:
    experiment_id = submit(client)["id"]
    finish_like_worker(settings, experiment_id, engine_run)
    for level in ("..", "..%2F..", "0%2F..%2F..", "-0", "1e1", "0x1", "１", "1.5", "%00", " 0"):
        for what in ("mask", "metrics"):
            response = client.get(f"/experiments/{experiment_id}/levels/{level}/{what}")
            assert response.status_code in (200, 404, 422), (level, response.text)
            assert b"SECRET-BYTES" not in response.content


def test_mask_reuse_ids_are_validated(client: TestClient) -> None:
    for bad in ("..", "../../x", "a" * 33, "x/y", "0" * 32 + "/.."):
        spec = tiny_spec(mask={"experiment_id": bad, "level": 0})
        assert client.post("/experiments", json=spec).status_code in (404, 422)


def test_paths_are_built_only_from_valid_ids_and_levels(settings: Settings) -> None:
    for bad in ("..", "../x", "/etc", "a" * 31, "a" * 33, "G" * 32, "0" * 31 + "\x00"):
        with pytest.raises(artifacts.InvalidId):
            artifacts.experiment_dir(settings, bad)
    good = "0" * 32
    for level in (-1, 1000, True, 1.0, "0"):
        with pytest.raises(ValueError):
            artifacts.mask_path(settings, good, level)  # type: ignore[arg-type]
    for kind in ("../x", "x/y", "", "X", "a" * 65):
        with pytest.raises(ValueError):
            artifacts.run_path(settings, good, 0, kind)
    path = artifacts.mask_path(settings, good, 3)
    assert path.resolve().is_relative_to(settings.experiments_dir.resolve())


def _python_sources() -> list[Path]:
    folders = ("lth_core", "store", "service", "worker", "cli")
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def test_no_pickle_anywhere_user_bytes_reach() -> None:
    """safetensors and JSON only: no pickle, no unsafe torch.load, no numpy pickles."""
    banned = re.compile(
        r"\bimport (c?pickle|dill|joblib|shelve|marshal)\b|\bfrom (c?pickle|dill|joblib|shelve)\b"
        r"|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load"
    )
    torch_load = re.compile(r"torch\.load\(([^)]*)\)")
    for path in _python_sources():
        text = path.read_text()
        assert not banned.search(text), path
        for call in torch_load.finditer(text):
            assert "weights_only=True" in call.group(1), (path, call.group(0))


# ------------------------------------------------------------------ no server paths in errors


def test_an_error_recorded_by_the_worker_names_no_server_path(tmp_path: Path) -> None:
    """Found: a resume whose mask source was gone failed with FileNotFoundError naming the
    absolute path of the file under the data directory."""
    from worker.level.lease import _describe

    settings = Settings(data_dir=tmp_path / "data")
    missing = (
        settings.data_dir.resolve() / "experiments" / ("a" * 32) / "levels/001/mask.safetensors"
    )
    error = FileNotFoundError(2, "No such file or directory", str(missing))
    kind, message = _describe(error, settings)
    assert kind == "FileNotFoundError" and str(tmp_path) not in message
    assert f"'experiments/{'a' * 32}/levels/001/mask.safetensors'" in message
    other = _describe(ValueError("bad file /usr/lib/python3/site.py here"), settings)[1]
    assert other == "bad file .../site.py here"


def test_errors_returned_by_the_api_name_no_server_path(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    from store import experiments
    from store.db import session_scope

    experiment_id = submit(client, tiny_spec())["id"]
    with session_scope(settings) as session:  # as recorded by an older worker
        experiments.mark_failed(
            session, experiment_id, "FileNotFoundError", f"no file '{tmp_path}/x/y.safetensors'"
        )
    shown = client.get(f"/experiments/{experiment_id}").json()["error"]["message"]
    assert shown == "no file '.../y.safetensors'"
    # An outage that names a path (the data directory cannot be created): 503, no path.
    from service.main import create_app

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    broken = Settings(data_dir=blocker / "data")
    with TestClient(create_app(broken)) as other:
        response = other.get("/experiments")
    assert response.status_code == 503 and str(tmp_path) not in response.text, response.text
