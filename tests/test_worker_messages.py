"""Issue 24, messages the worker receives: an unreadable one is logged and dead-lettered and the
worker reads on (Redis and the embedded broker); stale ones of finished, cancelled or deleted
experiments are dropped without training; a worker says which queues it consumes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Queue
from test_worker_faults import (  # noqa: F401  (fixtures)
    REDIS_HOST,
    REDIS_PORT,
    Processes,
    _redis,
    pg_url,
    redis_db,
    redis_stack,
    tiny,
    wait_worker_ready,
)

from store.broker import transport_options_for
from store.settings import Settings
from worker.transport import DEAD_LETTER_QUEUE, FilesystemTransport, RedisTransport

GARBAGE = [b"not json {", b"[1, 2]", b'{"body": "x"}']


def _publish(connection: Connection, queue: Queue, body: dict[str, Any]) -> None:
    connection.Producer().publish(
        body,
        exchange=queue.exchange,
        routing_key=queue.routing_key,
        declare=[queue],
        serializer="json",
    )


def _drain(connection: Connection, queue: Queue, timeout: float = 5) -> list[Any]:
    got: list[Any] = []
    with Consumer(connection, [queue], callbacks=[lambda body, m: (got.append(body), m.ack())]):
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.5)
            except TimeoutError:
                continue
    return got


@pytest.mark.redis
def test_redis_unreadable_messages_are_dead_lettered_and_the_next_is_read(
    redis_db: int,  # noqa: F811  (the fixture)
) -> None:
    """Found: one non-JSON item on the ``lth`` list stopped the worker (JSONDecodeError in
    kombu's ``_brpop_read``, exit code 0)."""
    name = f"lth-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    client = _redis()
    client.execute_command("SELECT", redis_db)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
    with Connection(url, transport=RedisTransport) as connection:
        queue(connection.default_channel).declare()
        for raw in GARBAGE:
            client.lpush(name, raw)
        _publish(connection, queue, {"n": 1})
        assert _drain(connection, queue) == [{"n": 1}]  # BRPOP, the worker's path
        for raw in GARBAGE[:1]:
            client.lpush(name, raw)
        _publish(connection, queue, {"n": 2})
        simple = connection.SimpleQueue(queue)
        assert simple.get(timeout=5).payload == {"n": 2}  # RPOP (basic_get)
        simple.close()
    assert client.lrange(DEAD_LETTER_QUEUE, 0, -1) == [GARBAGE[0], *GARBAGE[::-1]]


def test_embedded_unreadable_messages_are_kept_aside_and_the_next_is_read(tmp_path: Path) -> None:
    options = transport_options_for(Settings(data_dir=tmp_path))
    # A fresh name: kombu keeps declared bindings per process, so a queue declared by an
    # earlier test against another folder would not be bound in this one.
    name = f"lth-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    with Connection(
        "filesystem://", transport=FilesystemTransport, transport_options=options
    ) as connection:
        inbox = Path(options["data_folder_in"])
        for i, raw in enumerate(GARBAGE):
            (inbox / f"000{i}_bad.{name}.msg").write_bytes(raw)
        _publish(connection, queue, {"n": 1})
        assert _drain(connection, queue) == [{"n": 1}]
    dead = sorted(p.name for p in Path(options["processed_folder"]).glob("*.dead"))
    assert dead == [f"000{i}_bad.{name}.dead" for i in range(3)]


def test_a_real_worker_survives_garbage_and_says_which_queues_it_consumes(
    redis_stack: tuple[Processes, Any, dict[str, str]],  # noqa: F811
    redis_db: int,  # noqa: F811
) -> None:
    processes, api, _ = redis_stack
    client = _redis()
    client.execute_command("SELECT", redis_db)
    for raw in GARBAGE:
        client.lpush("lth", raw)
    worker = processes.worker()
    wait_worker_ready(worker)
    spec = tiny(iterations=20, eval_every=10)
    spec["pruning"]["levels"] = 0
    experiment_id = api.submit(spec)
    body = api.wait(experiment_id, lambda b: b["status"] == "succeeded", timeout=90)
    assert body["progress"]["waiting"] is None
    assert worker.poll() is None, "the worker stopped"
    assert set(client.lrange(DEAD_LETTER_QUEUE, 0, -1)) == set(GARBAGE)
    ready = api.http.get("/readyz").json()
    assert ready["queues"]["lth"] and ready["queues"]["lth.cpu"] and not ready["queues"]["lth.gpu"]
    log = Path(worker.log_path).read_text()  # type: ignore[attr-defined]
    assert log.count("dropped an unreadable message from queue lth") == len(GARBAGE)
    assert "Unrecoverable error" not in log


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "deleted", "cancelling"])
def test_stale_messages_are_dropped_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """A run or control message of an experiment that finished, was cancelled (or is being
    cancelled while queued) or was deleted does nothing: no spec read, no engine built, no
    message sent, and the experiment's row is left as it is (a queued cancel is settled)."""
    from store import experiments
    from store.db import dispose_engines, session_scope
    from store.models import Experiment
    from worker.control import offered
    from worker.control.offered import OfferedControl
    from worker.level import task as level_task
    from worker.level.task import LevelTask, Outcome

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("a stale message reached the engine")

    for module in (level_task, offered):
        monkeypatch.setattr(module, "load_spec", never)
        monkeypatch.setattr(module, "build_experiment", never)
    settings = Settings(data_dir=tmp_path)
    with session_scope(settings) as session:
        row, _ = experiments.create(session, {"model": "lenet_300_100"}, owner=None)
        experiment_id = row.id
        if status == "deleted":
            session.delete(row)
        elif status == "cancelling":
            row.cancel_requested = True
        else:
            row.status = status
    try:
        outcome = LevelTask(settings, experiment_id, send_next=never, send_controls=never).run()
        control = OfferedControl(settings, experiment_id, 0, "random_reinit").run()
        assert control.value == "nothing"
        expected = {"cancelling": Outcome.CANCELLED}.get(status, Outcome.NOTHING)
        assert outcome is expected
        with session_scope(settings) as session:
            row = session.get(Experiment, experiment_id)
            final = row.status if row is not None else "deleted"
        assert final == {"cancelling": "cancelled"}.get(status, status)
    finally:
        dispose_engines()
