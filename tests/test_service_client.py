"""The terminal client (`lth submit/status/ls/cancel/download`) against a real server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from safetensors.numpy import load_file
from test_service_support import EngineRun, finish_like_worker, tiny_spec
from typer.testing import CliRunner

from cli.main import app as lth
from service.main import create_app
from store import broker
from store.db import dispose_engines
from store.settings import Settings

# Fixtures (settings, client, pg_database, engine_run) shared by the service tests.
pytest_plugins = ("test_service_support",)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """The API on a free loopback port, in a thread, over SQLite in tmp_path."""
    settings = Settings(data_dir=tmp_path / "data")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield url, settings
    instance.should_exit = True
    thread.join(10)
    dispose_engines()
    broker.close_clients()


def _lth(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lth, list(args))
    return result.exit_code, result.output


def test_submit_ls_status_cancel(server: tuple[str, Settings], tmp_path: Path) -> None:
    url, _ = server
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec()))
    code, out = _lth("submit", str(spec_file), "--url", url)
    assert code == 0, out
    experiment_id = out.split()[1]
    code, out = _lth("ls", "--url", url)
    assert code == 0 and experiment_id[:8] in out and "queued" in out  # ids shown short
    code, out = _lth("cancel", experiment_id, "--url", url)
    assert code == 0 and "cancelled" in out
    code, out = _lth("status", experiment_id, "--url", url)
    assert code == 0 and "cancelled" in out
    code, out = _lth("status", "0" * 32, "--url", url)
    assert code == 1 and "HTTP 404" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tiny_spec(seed=-1)))
    code, out = _lth("submit", str(bad), "--url", url)
    assert code == 1 and "seed" in out
    code, out = _lth("ls", "--url", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach" in out


def test_submit_wait_then_download(
    server: tuple[str, Settings], engine_run: EngineRun, tmp_path: Path
) -> None:
    url, settings = server
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec()))

    def worker() -> None:  # stands in for a worker: finishes whatever gets queued
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            items = httpx.get(f"{url}/experiments").json()["items"]
            if items:
                finish_like_worker(settings, items[0]["id"], engine_run)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=worker)
    thread.start()
    code, out = _lth("submit", str(spec_file), "--url", url, "--wait", "--interval", "0.1")
    thread.join()
    assert code == 0, out
    assert "succeeded" in out and "winning ticket" in out
    experiment_id = out.split()[1]

    ticket = tmp_path / "ticket.safetensors"
    code, out = _lth("download", experiment_id, "--ticket", "-o", str(ticket), "--url", url)
    assert code == 0, out
    assert any(name.startswith("init/") for name in load_file(ticket))
    mask = tmp_path / "mask.safetensors"
    code, out = _lth("download", experiment_id, "--level", "1", "-o", str(mask), "--url", url)
    assert code == 0 and set(load_file(mask)) == set(engine_run.summaries[1]["layers"])
    code, out = _lth("download", experiment_id, "--level", "7", "-o", str(mask), "--url", url)
    assert code == 1 and "no level 7" in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []
