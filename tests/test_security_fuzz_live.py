"""Schemathesis against a real `lth serve` (the embedded default: SQLite and the filesystem
broker, with its worker training what the fuzzer submits), as a new user would run it.

Authenticated with an API key, 4 concurrent clients, and the stateful phase: the OpenAPI links
from ``POST /experiments`` lead to every operation that takes the new id, so the fuzzer reads,
cancels, downloads, follows (the event stream: every event is checked against the event
schema openapi.yaml declares) and deletes experiments that exist (tests/fuzz/hooks.py makes
most positive submissions valid, or none would; tests/fuzz/schemathesis.toml names this
server's queues and models, which no static schema can). Every check must pass and no
response may be a 5xx: with a deferred ``BEGIN`` this is where SQLite's "database is locked"
showed up as 503s.

The coverage phase is left out: with several workers it trips a CPython 3.11 bug in
``ast.parse`` (hypothesis describes lambdas while generating) that is no fault of the API; the
in-process fuzz test (test_security_fuzz.py) still runs every operation's examples.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Seconds schemathesis fuzzes for (the fixed cost around it is the server's start).
FUZZ_SECONDS = 20
WORKERS = 4

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LTH_") and k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(ROOT),
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        LTH_DATA_DIR=str(data_dir),
        LTH_HEARTBEAT_SECONDS="0.5",
        LTH_HEARTBEAT_TIMEOUT_SECONDS="5",
        LTH_MAX_ACTIVE_PER_OWNER="100000",
        # An event stream ends with its experiment; one that is still running is closed after
        # this long (clients reconnect with Last-Event-ID), so a stream the fuzzer opens on a
        # queued experiment holds a worker for seconds, not until the request timeout.
        LTH_API_EVENTS_MAX_SECONDS="2",
        SCHEMATHESIS_HOOKS="tests.fuzz.hooks",
    )
    return env


def _summarize(har: dict[str, Any]) -> tuple[int, list[str], collections.Counter[tuple[str, int]]]:
    """(requests, the 5xx ones, status counts per operation family) from a HAR report."""
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    server_errors = []
    for entry in har["log"]["entries"]:
        method, url = entry["request"]["method"], entry["request"]["url"]
        status = entry["response"]["status"]
        path = "/" + url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "experiments" and parts[2]:
            parts[2] = "{id}"
        statuses[(f"{method} {'/'.join(parts[:4])}", status)] += 1
        if status >= 500:
            server_errors.append(f"{method} {url} -> {status}")
    return len(har["log"]["entries"]), server_errors, statuses


def test_stateful_authenticated_concurrent_fuzz_of_lth_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    key = subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", "create", "--owner", "fuzzer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--gpus", "none"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    reports = tmp_path / "reports"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "lth serve never became ready"
            time.sleep(0.3)
        run = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli"),
                *("--config-file", str(ROOT / "tests" / "fuzz" / "schemathesis.toml")),
                *("run", str(ROOT / "openapi.yaml")),
                *("--url", url, "-H", f"Authorization: Bearer {key}"),
                *("--workers", str(WORKERS), "--max-time", str(FUZZ_SECONDS)),
                *("--request-timeout", "60"),  # a loaded shared machine is slow, not broken
                *("--phases", "examples,fuzzing,stateful", "--suppress-health-check", "all"),
                # Schema-valid specs may rightly be refused (rules JSON Schema cannot state).
                *("--exclude-checks", "positive_data_acceptance"),
                *("--report", "har,ndjson", "--report-dir", str(reports), "--seed", "14"),
            ],
            cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
            env=env,
            capture_output=True,
            text=True,
            timeout=FUZZ_SECONDS + 120,
        )
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
    (har_path,) = reports.glob("har-*")
    requests, server_errors, statuses = _summarize(json.loads(har_path.read_text()))
    failures = []
    for line in next(reports.glob("ndjson-*")).read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished and finished["status"] in ("failure", "error"):
            failures.append(finished["recorder"]["label"])
    print(f"\nlive schemathesis: {requests} requests, {len(server_errors)} 5xx, {WORKERS} workers")
    assert server_errors == [], server_errors
    output = run.stdout[run.stdout.find("FAILURES") - 40 :][:6000]
    assert run.returncode == 0 and not failures, f"{failures}\n{output}"
    # The links were followed: experiments were created, then found, cancelled and deleted.
    assert statuses[("POST /experiments", 201)] > 0
    assert statuses[("GET /experiments/{id}", 200)] > 0
    assert statuses[("POST /experiments/{id}/cancel", 200)] > 0
    # Delete reached experiments that exist: deleted (204), or refused while a cancel was still
    # settling (409 not_finished). Which of the two a loaded machine gives is timing, not a bug.
    deletes = (
        statuses[("DELETE /experiments/{id}", 204)] + statuses[("DELETE /experiments/{id}", 409)]
    )
    assert deletes > 0, sorted(statuses.items())
    # The event stream is fuzzed too (its events checked against their schema by the run).
    assert any(op == "GET /experiments/{id}/events" for op, _ in statuses), sorted(statuses)
    reached = sum(n for (op, code), n in statuses.items() if "/{id}/" in op and code != 404)
    assert reached > 0, "the artifact operations never got past 404"
    assert requests > 50
