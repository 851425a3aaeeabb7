"""Which queues live workers consume (store.workers), as the API uses it: a queue an
experiment waits in that nobody consumes is said in its ``progress.waiting`` and in
``/readyz``; a queue that is neither standard, configured (``LTH_QUEUES``) nor consumed is
refused at submit.

Read at most every :data:`TTL_SECONDS` per process (one small query), so polling clients
cost nothing more.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.errors import Unprocessable, detail
from store import workers
from store.broker import ALL_QUEUES
from store.models import Status
from store.settings import Settings

TTL_SECONDS = 2.0

Consumers = dict[str, list[str]]


class ConsumerCache:
    """The consumers of each queue, re-read when older than ``ttl`` seconds."""

    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: Consumers = {}
        self._read_at = -float("inf")

    def get(self, connection: Connection | Session, settings: Settings) -> Consumers:
        with self._lock:
            if time.monotonic() - self._read_at < self.ttl:
                return self._value
        value = workers.consumers(connection, timeout_seconds=settings.heartbeat_timeout_seconds)
        with self._lock:
            self._value, self._read_at = value, time.monotonic()
        return value

    def clear(self) -> None:
        with self._lock:
            self._read_at = -float("inf")


CONSUMERS = ConsumerCache()


def waiting_note(status: Any, queue: str | None, consumers: Consumers | None) -> str | None:
    """What a queued experiment waits for when no live worker consumes its queue (a running
    one is held by a worker, or was a moment ago)."""
    if consumers is None or status != Status.QUEUED:
        return None
    queue = queue or ALL_QUEUES[0]
    if consumers.get(queue):
        return None
    if not consumers:
        return (
            f"no worker consumes queue {queue}: no worker is running; it starts when one "
            f"does (`lth worker --queues {queue}`, or `lth serve`)"
        )
    others = ", ".join(sorted(consumers))
    return (
        f"no worker consumes queue {queue} (the running workers consume {others}); it starts "
        f"when a worker with `--queues {queue}` runs, or cancel it and submit to another queue"
    )


def configured_queues(settings: Settings) -> list[str]:
    """The standard queues and those named in ``LTH_QUEUES``."""
    extra = [q.strip() for q in settings.queues.split(",") if q.strip()]
    return list(dict.fromkeys([*ALL_QUEUES, *extra]))


def check_queue(session: Session, settings: Settings, queue: str) -> None:
    """Refuses (422 ``unknown_queue``) a queue nobody configured and no live worker consumes:
    a typo would otherwise wait forever and count against the owner's active limit."""
    known = configured_queues(settings)
    if queue in known:
        return
    consumed = CONSUMERS.get(session, settings)
    if queue in consumed:
        return
    message = (
        f"queue {queue} is not one this service knows: use one of {', '.join(known)}"
        + (f" or a queue a running worker consumes ({', '.join(consumed)})" if consumed else "")
        + "; an operator adds queues with LTH_QUEUES"
    )
    raise Unprocessable(
        message,
        error_type="unknown_queue",
        details=[detail(["query", "queue"], message, "unknown_queue")],
    )
