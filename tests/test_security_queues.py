"""Issue 24, messages: a queue nobody consumes is visible (readiness, the experiment's
progress), an unknown queue is refused at submit, and workers say which queues they consume."""

from __future__ import annotations

from fastapi.testclient import TestClient
from test_service_support import assert_error, submit, tiny_spec

from service.consumers import CONSUMERS
from service.main import create_app
from store import workers
from store.db import session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)


def _worker(settings: Settings, node: str, queues: list[str]) -> None:
    with session_scope(settings) as session:
        workers.beat(session, node, queues, timeout_seconds=60)
    CONSUMERS.clear()


def test_a_queue_nobody_consumes_is_said_where_the_user_and_the_operator_look(
    client: TestClient, settings: Settings
) -> None:
    """Found: `?queue=lth.gpu` on a CPU-only `lth serve` was 201, queued for 22 minutes with
    nothing saying why, and /readyz said ready with no detail."""
    _worker(settings, "lth-cpu-1@box", ["lth", "lth.cpu"])
    gpu = submit(client, tiny_spec(), params={"queue": "lth.gpu"})
    waiting = gpu["progress"]["waiting"]
    assert "no worker consumes queue lth.gpu" in waiting and "lth, lth.cpu" in waiting
    read = client.get(f"/experiments/{gpu['id']}")
    assert read.json()["progress"]["waiting"] == waiting
    listed = client.get("/experiments").json()["items"][0]
    assert listed["progress"]["waiting"] == waiting
    ready = client.get("/readyz").json()
    assert ready["unconsumed"] == ["lth.gpu"]
    assert ready["queues"]["lth"] == ["lth-cpu-1@box"] and ready["queues"]["lth.gpu"] == []
    # Default work is consumed: nothing to say.
    assert submit(client)["progress"]["waiting"] is None
    # A GPU worker starts: the note goes, and the ETag changes with it (no stale 304).
    etag = read.headers["ETag"]
    _worker(settings, "lth-gpu0-2@box", ["lth", "lth.gpu"])
    again = client.get(f"/experiments/{gpu['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.json()["progress"]["waiting"] is None
    assert client.get("/readyz").json()["unconsumed"] == []


def test_no_worker_at_all_is_said_too(client: TestClient) -> None:
    waiting = submit(client)["progress"]["waiting"]
    assert waiting.startswith("no worker consumes queue lth: no worker is running")


def test_unknown_queues_are_refused_unless_configured_or_consumed(
    client: TestClient, settings: Settings
) -> None:
    error = assert_error(
        client.post("/experiments", json=tiny_spec(), params={"queue": "lth.gpuu"}),
        422,
        "unknown_queue",
    )
    assert "lth, lth.gpu, lth.cpu" in error["message"] and "LTH_QUEUES" in error["message"]
    assert error["details"][0]["loc"] == ["query", "queue"]
    assert client.get("/experiments").json()["total"] == 0  # nothing stored, no quota used
    _worker(settings, "lth-cpu-3@box", ["lth", "big-memory"])  # `lth worker --queues ...`
    assert submit(client, tiny_spec(), params={"queue": "big-memory"})["queue"] == "big-memory"
    configured = settings.model_copy(update={"queues": "night"})
    with TestClient(create_app(configured)) as other:
        assert submit(other, tiny_spec(), params={"queue": "night"})["queue"] == "night"


def test_a_worker_forgotten_or_silent_consumes_nothing(settings: Settings) -> None:
    from store.db import get_engine

    _worker(settings, "a@box", ["lth"])
    with get_engine(settings).connect() as connection:
        assert workers.consumers(connection, timeout_seconds=60) == {"lth": ["a@box"]}
        assert workers.consumers(connection, timeout_seconds=0) == {}
    with session_scope(settings) as session:
        workers.forget(session, "a@box")
    with get_engine(settings).connect() as connection:
        assert workers.consumers(connection, timeout_seconds=60) == {}
