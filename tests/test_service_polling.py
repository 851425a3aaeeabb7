"""The API under polling: conditional GETs (ETag/304), the event stream on a real tiny
experiment, the in-flight limit shedding with 503 + Retry-After, and `lth api --workers 2`
keeping keys and the open-mode rule. Throughput figures live in bench/ (poll.py, load.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from test_service_support import assert_error, submit, tiny_spec

from store import api_keys, broker, experiments
from store.db import dispose_engines, session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)

REPO = Path(__file__).resolve().parent.parent


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def parse_events(text: str) -> list[tuple[str, str | None, Any]]:
    """(event, id, data) of every event in a text/event-stream body; comments skipped."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            out.append(
                (fields.get("event", "message"), fields.get("id"), json.loads(fields["data"]))
            )
    return out


def test_etag_answers_304_and_changes_with_the_experiment(
    client: TestClient, settings: Settings
) -> None:
    experiment_id = submit(client)["id"]
    path = f"/experiments/{experiment_id}"
    first = client.get(path)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Vary"] == "Authorization"
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert client.get(path, headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"other"'}).json() == first.json()

    page = client.get("/experiments")
    page_tag = page.headers["ETag"]
    assert client.get("/experiments", headers={"If-None-Match": page_tag}).status_code == 304

    with session_scope(settings) as session:  # the worker reports progress
        experiments.record_progress(session, experiment_id, {"level": 0, "iteration": 5})
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.json()["progress"]["iteration"] == 5
    assert client.get("/experiments", headers={"If-None-Match": page_tag}).status_code == 200
    # Another page (other query) never matches this page's tag.
    other = client.get("/experiments", params={"limit": 1}, headers={"If-None-Match": page_tag})
    assert other.status_code == 200

    # The CLI's poller: the second read is a 304 and gives the same body.
    from cli.api_client import Conditional

    seen: list[int] = []
    client.event_hooks["response"].append(lambda r: seen.append(r.status_code))
    reader = Conditional(client)
    assert reader.get(path) == reader.get(path) == changed.json()
    assert seen == [200, 304]


def _run_like_worker(settings: Settings, experiment_id: str, delay: float) -> threading.Thread:
    """A worker in a thread: every level of the experiment, as `lth worker` runs them."""
    from worker.level.task import LevelTask, Outcome

    def work() -> None:
        time.sleep(delay)  # let the stream see the experiment queued first
        for _ in range(10):
            outcome = LevelTask(settings, experiment_id, send_next=lambda: None, device="cpu").run()
            if outcome is not Outcome.LEVEL_DONE:
                return

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_event_stream_follows_a_real_experiment_to_its_end(
    tmp_path: Path, one_torch_thread: None
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", api_events_poll_seconds=0.05, api_events_heartbeat_seconds=0.2
    )
    from service.main import create_app

    with session_scope(settings) as session:
        _, alice = api_keys.create_key(session, "alice")
        _, bob = api_keys.create_key(session, "bob")
    try:
        with TestClient(create_app(settings)) as client:
            experiment_id = submit(client, tiny_spec(), headers=bearer(alice))["id"]
            path = f"/experiments/{experiment_id}/events"
            assert_error(client.get(path, headers=bearer(bob)), 404, "not_found")
            assert_error(client.get(path), 401, "unauthorized")
            assert_error(client.get(path, headers={**bearer(alice), "Last-Event-ID": "x"}), 422)

            worker = _run_like_worker(settings, experiment_id, delay=0.5)
            with client.stream("GET", path, headers=bearer(alice)) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                text = response.read().decode()
            worker.join(60)
            events = parse_events(text)
            names = [name for name, _, _ in events]
            statuses = [data["status"] for name, _, data in events if name == "status"]
            assert statuses == ["queued", "running", "succeeded"], statuses
            levels = [data["level"] for name, _, data in events if name == "level"]
            assert levels == [0, 1]
            assert "progress" in names and ": keep-alive" in text
            assert names[-1] == "end" and events[-1][2] == {"status": "succeeded"}
            assert all(event_id for _, event_id, _ in events)
            level0 = next(data for name, _, data in events if name == "level")
            final = client.get(f"/experiments/{experiment_id}", headers=bearer(alice)).json()
            assert level0 == final["levels"][0]

            # Resuming after the first level: only what came later, then the end at once.
            cursor = next(i for name, i, data in events if name == "level" and data["level"] == 0)
            resumed = client.get(path, headers={**bearer(alice), "Last-Event-ID": cursor})
            later = parse_events(resumed.text)
            assert [d["level"] for n, _, d in later if n == "level"] == [1]
            assert [d["status"] for n, _, d in later if n == "status"] == ["succeeded"]
            assert later[-1][0] == "end"
            # Every id is a cursor the API takes back, the first (no version yet) included.
            first = client.get(path, headers={**bearer(alice), "Last-Event-ID": events[0][1]})
            assert first.status_code == 200 and events[0][1].endswith("-")
            assert [n for n, _, _ in parse_events(first.text)][-1] == "end"

            # The CLI follows the same stream (`lth submit --wait`) and stops at its end.
            from cli.api_client import follow_events

            client.headers.update(bearer(alice))
            followed: list[str] = []
            follow_events(client, experiment_id, lambda name, _data: followed.append(name))
            assert followed[0] == "status" and followed[-1] == "end" and "level" in followed
    finally:
        dispose_engines()
        broker.close_clients()


def test_in_flight_limit_sheds_with_503_and_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api.routes import experiments as routes
    from service.main import create_app

    settings = Settings(data_dir=tmp_path / "data", api_max_in_flight=1, api_retry_after_seconds=2)
    original = routes.experiment_response

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(routes, "experiment_response", slow)
    app = create_app(settings)

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            created = await c.post("/experiments", json=tiny_spec())
            path = f"/experiments/{created.json()['id']}"
            first = asyncio.create_task(c.get(path))
            await asyncio.sleep(0.1)  # the first is in flight, sleeping in its thread
            began = time.perf_counter()
            second = await c.get(path)
            shed_after = time.perf_counter() - began
            health = await c.get("/healthz")  # never shed
            return [await first, second], health, shed_after

    try:
        (first, second), health, shed_after = asyncio.run(scenario())
    finally:
        dispose_engines()
        broker.close_clients()
    assert first.status_code == 200
    error = assert_error(second, 503, "overloaded")
    assert second.headers["Retry-After"] == "2" and "LTH_API_MAX_IN_FLIGHT" in error["message"]
    assert shed_after < 0.3  # answered at once, not after the slow request
    assert health.status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_api_processes_keep_keys_and_the_open_mode_rule(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    port = _free_port()
    env = {**os.environ, "LTH_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    for name in ("LTH_DATABASE_URL", "LTH_BROKER_URL", "LTH_API_HOST"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(
        [*argv, "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "lth api did not start"
            time.sleep(0.2)
        children = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) >= 2, children  # uvicorn's supervisor and its two processes
        with httpx.Client(base_url=url, timeout=10) as client:
            # Open mode on loopback without keys, in every process (new connections spread).
            for _ in range(6):
                assert (
                    client.get("/experiments", headers={"Connection": "close"}).status_code == 200
                )
            with session_scope(settings) as session:
                _, key = api_keys.create_key(session, "alice")
            for _ in range(6):  # the first key closes every process at once
                anonymous = client.get("/experiments", headers={"Connection": "close"})
                assert_error(anonymous, 401, "unauthorized")
                keyed = client.get("/experiments", headers={**bearer(key), "Connection": "close"})
                assert keyed.status_code == 200 and keyed.json()["total"] == 0
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        dispose_engines()


def test_an_event_id_is_a_cursor_and_openapi_states_which_last_event_ids_are_taken() -> None:
    from service.errors import ApiError
    from service.events import LAST_EVENT_ID_PATTERN, Cursor

    for cursor in (Cursor(0, "queued", ""), Cursor(3, "running", "ab" * 12)):
        assert Cursor.parse(str(cursor)) == cursor
        assert re.search(LAST_EVENT_ID_PATTERN, str(cursor))
    assert Cursor.parse("") == Cursor() == Cursor.parse(None)
    assert re.search(LAST_EVENT_ID_PATTERN, "")
    for bad in ("x", " 0-queued-", "0-queued-abc", "\u0661-queued-", "1234567-running-"):
        assert not re.search(LAST_EVENT_ID_PATTERN, bad), bad
        with pytest.raises(ApiError):
            Cursor.parse(bad)


def test_schemathesis_checks_every_event_against_the_event_schema(settings: Settings) -> None:
    """openapi.yaml declares the stream as one schema per event (OpenAPI 3.1), each event's
    `data` by its JSON schema: schemathesis (the fuzz tests) checks every event it reads.
    Proved by breaking the declaration: then the first event fails the check."""
    import schemathesis
    import yaml
    from schemathesis.checks import response_schema_conformance
    from schemathesis.core.failures import FailureGroup

    from service.consumers import CONSUMERS
    from service.main import create_app
    from service.openapi import OPENAPI_PATH

    CONSUMERS.clear()
    quick = settings.model_copy(update={"api_events_max_seconds": 0.3})  # queued: ends soon
    app = create_app(quick)
    with TestClient(app) as client:
        experiment_id = submit(client, tiny_spec())["id"]
    document = yaml.safe_load(OPENAPI_PATH.read_text())

    def check(doc: dict[str, Any]) -> None:
        schema = schemathesis.openapi.from_dict(doc)
        schema.app = app
        operation = schema["/experiments/{experiment_id}/events"]["GET"]
        case = operation.Case(path_parameters={"experiment_id": experiment_id})
        response = case.call()
        assert response.status_code == 200 and "event: status" in response.text
        case.validate_response(response, checks=[response_schema_conformance])

    check(document)
    events = document["paths"]["/experiments/{experiment_id}/events"]["get"]["responses"]
    kinds = events["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    status = next(k for k in kinds if k["properties"]["event"]["const"] == "status")
    status["properties"]["data"]["contentSchema"]["properties"]["status"]["enum"] = ["running"]
    with pytest.raises(FailureGroup) as info:
        check(document)
    (failure,) = info.value.exceptions
    assert "Event #0" in str(failure) and "SSE event violates schema" in str(failure)
