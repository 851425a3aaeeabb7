"""How every process reaches the broker: one derivation for the API (which sends) and the worker.

With ``LTH_BROKER_URL`` set (``redis://...``) the broker is that server. Unset, the broker is
kombu's *filesystem* transport under ``DATA_DIR/broker``: it needs no server, survives process
restarts (messages are files), and keeps the single-box setup to one directory. The SQLAlchemy
transport was the alternative; it would poll the same SQLite file the API and the worker write,
adding lock contention to the database that is our system of record, for no gain.

Both transports lose a message that was being worked on when a worker dies (Redis keeps nothing
on disk here; the filesystem transport deletes a file when it hands it out), which is why the
database, not the broker, is the system of record and the worker's reconciler re-sends lost work.

Celery is imported only inside :func:`client_app`, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

#: The one task the API sends: run (the next level of) experiment ``args[0]``.
RUN_EXPERIMENT_TASK = "lth.run_experiment"

#: Sent by a worker running a level, one per control run of that level, so that idle workers
#: can train them in parallel: args ``[experiment_id, level, kind]``.
RUN_CONTROL_TASK = "lth.run_control"

#: Queues. Every worker consumes DEFAULT_QUEUE; GPU_QUEUE / CPU_QUEUE let a sender insist on a
#: kind of device (a GPU worker consumes ``lth`` and ``lth.gpu``; a CPU worker ``lth`` and
#: ``lth.cpu``, or only ``lth.cpu`` on a cluster whose GPU workers should get all default work).
DEFAULT_QUEUE = "lth"
GPU_QUEUE = "lth.gpu"
CPU_QUEUE = "lth.cpu"
ALL_QUEUES: tuple[str, ...] = (DEFAULT_QUEUE, GPU_QUEUE, CPU_QUEUE)

#: Slack added to the longest task before a Redis-unacked message is redelivered.
VISIBILITY_MARGIN_SECONDS = 3600.0


def is_embedded(settings: Settings) -> bool:
    """True when no broker server is configured and the filesystem transport is used."""
    return not settings.broker_url


def broker_dir(settings: Settings) -> Path:
    """Root of the embedded broker's files (queue, processed messages, exchange tables)."""
    return settings.data_dir / "broker"


def broker_url_for(settings: Settings) -> str:
    """The broker URL every process must use: the configured one, or the embedded transport."""
    return settings.broker_url or "filesystem://"


def visibility_timeout_for(settings: Settings) -> float:
    """Seconds before Redis hands an unacked message to another worker.

    It must be longer than the longest task (one level, bounded by the task time limit), or a
    level still being trained would be delivered a second time. The database claim would stop
    that second copy anyway; this keeps it from happening in the first place.
    """
    return settings.task_time_limit_seconds + VISIBILITY_MARGIN_SECONDS


def transport_options_for(settings: Settings) -> dict[str, Any]:
    """Transport options matching :func:`broker_url_for`; creates the embedded folders."""
    if not is_embedded(settings):
        return {
            "visibility_timeout": visibility_timeout_for(settings),
            # Fail fast and retry rather than hang on a dead socket (a restarted Redis).
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            "retry_on_timeout": True,
            "health_check_interval": 25,
        }
    root = broker_dir(settings)
    queue, processed, control = root / "queue", root / "processed", root / "control"
    for folder in (queue, processed, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        # Consumers take a message by moving its file; a move within one file system is an
        # atomic rename, so two consumers can never take the same message. (The default
        # target, /tmp, may be another file system, where a move is copy + delete.)
        "store_processed": True,
        "processed_folder": str(processed),
        "control_folder": str(control),
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings both senders and workers need to agree on.

    JSON only (a message is an id, never a pickled object); no result backend (results live in
    the database).
    """
    return {
        "broker_url": broker_url_for(settings),
        "broker_transport_options": transport_options_for(settings),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": DEFAULT_QUEUE,
        "task_create_missing_queues": True,
        "task_routes": {
            RUN_EXPERIMENT_TASK: {"queue": DEFAULT_QUEUE},
            RUN_CONTROL_TASK: {"queue": DEFAULT_QUEUE},
        },
        # Pidbox (remote control) needs fanout; the filesystem transport's is file-based and
        # slow to poll, and the embedded worker is supervised by `lth serve` instead.
        "worker_enable_remote_control": not is_embedded(settings),
    }


_CLIENTS: dict[tuple[str, str], Celery] = {}
_CLIENTS_LOCK = threading.Lock()


def client_app(settings: Settings) -> Celery:
    """A sending-only Celery app for these settings, one per process and broker.

    The API (and the reconciler) send by task name, so they never import the worker's code.
    """
    from celery import Celery

    key = (broker_url_for(settings), str(settings.data_dir))
    with _CLIENTS_LOCK:
        app = _CLIENTS.get(key)
        if app is None:
            app = Celery("lth-client", set_as_current=False)
            app.conf.update(celery_config(settings))
            _CLIENTS[key] = app
        return app


def send_experiment(settings: Settings, experiment_id: str, queue: str | None = None) -> None:
    """Asks a worker to run the next unfinished level of ``experiment_id``.

    Call it only after the experiment is committed: the worker reads everything else from the
    database. Sending twice is harmless (the worker's claim lets one copy run).
    """
    client_app(settings).send_task(
        RUN_EXPERIMENT_TASK, args=[experiment_id], queue=queue or DEFAULT_QUEUE
    )


def queue_depth(settings: Settings, queues: tuple[str, ...] = ALL_QUEUES) -> int:
    """Messages waiting (not yet handed to a worker) in ``queues``; a missing queue counts 0.

    Declaring a queue on kombu's virtual transports (Redis, filesystem) creates nothing: it
    only reports the queue's size, which is 0 for a queue that a flush or restart removed.
    """
    app = client_app(settings)
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        return sum(channel.queue_declare(queue=name).message_count for name in queues)


def queue_lengths(settings: Settings, queues: list[str]) -> dict[str, int]:
    """Messages waiting per queue, for /metrics: on Redis the lengths of the queue's lists
    (what KEDA's redis scaler reads), failing within a second when Redis is down (a scrape
    must not wait for kombu's reconnects); the embedded broker's files otherwise."""
    if is_embedded(settings) or not (settings.broker_url or "").startswith(("redis", "rediss")):
        return {queue: queue_depth(settings, (queue,)) for queue in queues}
    import redis

    client = redis.Redis.from_url(
        settings.broker_url or "", socket_timeout=1, socket_connect_timeout=1
    )
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for name in _redis_lists(queue):
                pipe.llen(name)
        lengths = iter(pipe.execute())
        return {queue: sum(next(lengths) for _ in _redis_lists(queue)) for queue in queues}
    finally:
        client.close()


def _redis_lists(queue: str) -> tuple[str, ...]:
    r"""kombu keeps a queue's priorities in lists named queue, queue\x06\x163, ..."""
    return (queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9)))


def pending_experiments(settings: Settings, queues: tuple[str, ...]) -> set[str]:
    """Ids of the experiments that have a run message waiting in ``queues`` (or, on Redis,
    handed to a worker and not yet acknowledged): what the reconciler looks for, experiment by
    experiment, instead of comparing counts that stale messages would inflate."""
    if is_embedded(settings):
        return _pending_in_files(broker_dir(settings) / "queue", queues)
    return _pending_in_redis(settings, queues)


def _pending_in_files(folder: Path, queues: tuple[str, ...]) -> set[str]:
    suffixes = {f".{queue}.msg" for queue in queues}
    found: set[str] = set()
    for path in folder.glob("*.msg"):
        if any(path.name.endswith(suffix) for suffix in suffixes):
            try:
                found.update(_run_target(path.read_bytes()))
            except OSError:  # taken by a worker in between
                continue
    return found


def _pending_in_redis(settings: Settings, queues: tuple[str, ...]) -> set[str]:
    import redis

    client = redis.Redis.from_url(settings.broker_url or "", socket_timeout=30)
    found: set[str] = set()
    try:
        for queue in queues:
            for name in _redis_lists(queue):
                for raw in client.lrange(name, 0, -1):
                    found.update(_run_target(raw))
        for raw in client.hvals("unacked"):
            try:
                envelope = json.loads(raw)[0]
            except (ValueError, TypeError, IndexError, KeyError):
                continue
            found.update(_run_target(json.dumps(envelope).encode()))
    finally:
        client.close()
    return found


def _run_target(raw: bytes) -> set[str]:
    """The experiment id of a run message's kombu envelope; empty for anything else
    (another task, a malformed message)."""
    try:
        envelope = json.loads(raw)
        if (envelope.get("headers") or {}).get("task") != RUN_EXPERIMENT_TASK:
            return set()
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return {str(args[0])}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return set()


def close_clients() -> None:
    """Drops cached sending apps (tests that change the broker between cases)."""
    with _CLIENTS_LOCK:
        for app in _CLIENTS.values():
            app.close()
        _CLIENTS.clear()
