"""A real server (uvicorn in a thread) under the conditions of issue 24.

Reads never take the write lock: downloads during training on SQLite.

A real server (uvicorn, in a thread) sends a mask to twelve slow clients at once while the
worker's own heartbeat (``store.claims.heartbeat``, with a short busy timeout) keeps beating
against the same SQLite file. Before, each download held ``BEGIN IMMEDIATE`` until its last
byte was sent: the heartbeat failed, the reconciler took the healthy experiment over, and other
requests were answered 503 ``database_unavailable``.

API keys never reach the access log: ``GET /experiments?api_key=lth_...`` logged the key.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from test_service_support import tiny_spec

from store import artifacts, claims, experiments
from store.db import dispose_engines, session_scope
from store.settings import Settings

CLIENTS = 12
MASK_BYTES = 12 << 20  # more than the loopback socket buffers hold: the sends must wait


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = Settings(data_dir=tmp_path / "data", api_host="127.0.0.1")
    from service.main import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}", settings
    finally:
        running.should_exit = True
        thread.join(timeout=10)
        dispose_engines()


def _slow_download(address: str, path: str, hold: float, out: list[tuple[int, int]]) -> None:
    """GET ``path``, read a little, stall ``hold`` seconds (a slow client), then read the rest."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
        )
        received = sock.recv(65536)
        time.sleep(hold)
        while chunk := sock.recv(1 << 20):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    out.append((int(head.split()[1]), len(body)))


def test_twelve_slow_downloads_leave_the_heartbeat_and_writes_alone(
    server: tuple[str, Settings],
) -> None:
    address, settings = server
    with session_scope(settings) as session:
        experiment, _ = experiments.create(session, tiny_spec())
        experiment_id = experiment.id
    with session_scope(settings) as session:
        assert claims.claim(session, experiment_id, "worker-1", timeout_seconds=5, max_attempts=9)
    mask = artifacts.mask_path(settings, experiment_id, 0)
    mask.parent.mkdir(parents=True, exist_ok=True)
    mask.write_bytes(os.urandom(MASK_BYTES))

    results: list[tuple[int, int]] = []
    path = f"/experiments/{experiment_id}/levels/0/mask"
    downloads = [
        threading.Thread(target=_slow_download, args=(address, path, 2.0, results))
        for _ in range(CLIENTS)
    ]
    for thread in downloads:
        thread.start()
    time.sleep(0.5)  # every download has started and stalled

    # The worker's heartbeat, as impatient as a worker on a busy disk: half a second.
    impatient = settings.model_copy(update={"db_busy_timeout_seconds": 0.5})
    beats, failed = 0, []
    with httpx.Client(base_url=f"http://{address}", timeout=10) as client:
        while any(thread.is_alive() for thread in downloads) and beats < 40:
            try:
                with session_scope(impatient) as session:
                    assert claims.heartbeat(session, experiment_id, "worker-1")
            except Exception as exc:  # "database is locked": the beat was missed
                failed.append(repr(exc))
            beats += 1
            assert client.get(f"/experiments/{experiment_id}").status_code == 200
            time.sleep(0.05)
        created = client.post("/experiments", json=tiny_spec())
    for thread in downloads:
        thread.join(timeout=30)

    assert failed == [], f"{len(failed)} of {beats} heartbeats missed: {failed[:2]}"
    assert created.status_code == 201, created.text
    assert results == [(200, MASK_BYTES)] * CLIENTS
    with session_scope(settings, read_only=True) as session:
        assert claims.holds(session, experiment_id, "worker-1")  # never taken over


def test_keys_in_the_query_string_never_reach_the_access_log(
    server: tuple[str, Settings],
) -> None:
    address, _ = server
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler, level = Collect(), access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    key = "lth_0123456789ab_" + "s" * 43
    try:
        with httpx.Client(base_url=f"http://{address}", timeout=10) as client:
            for query in (f"api_key={key}", f"token=hunter2&x={key}", "access_key=abc"):
                assert client.get(f"/experiments?{query}").status_code == 422
            assert client.get("/experiments?limit=1").status_code == 200
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    logged = "\n".join(lines)
    assert len(lines) == 4 and "limit=1" in logged, logged
    for secret in (key, "hunter2", "sss", "=abc"):
        assert secret not in logged
    assert "api_key=[redacted]" in logged
