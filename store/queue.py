"""What the API needs from the broker: send an experiment without failing the request, and
say whether the broker is reachable.

How to reach the broker (URL, embedded transport, queues, task name) is derived in one place,
:mod:`store.broker`; this module only adds the API's policy on top of it. The message carries
only the experiment id; the database row is the truth, so a failed publish loses nothing: the
row stays queued and the worker's reconciler sends it later.
"""

from __future__ import annotations

import logging

from store import broker
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)


def enqueue(experiment_id: str, settings: Settings | None = None, queue: str | None = None) -> bool:
    """Publishes ``lth.run_experiment(experiment_id)`` to ``queue`` (default ``lth``); call only
    after the row (which stores the queue) is committed.

    Returns False (and logs) when the broker cannot be reached, instead of raising: the
    caller has already stored the experiment and must still answer the client.
    """
    try:
        broker.send_experiment(settings or get_settings(), experiment_id, queue)
    except Exception as exc:  # any broker failure: the reconciler is the fallback
        log.warning("could not enqueue experiment %s (left queued): %s", experiment_id, exc)
        return False
    return True


def broker_reachable(settings: Settings | None = None) -> tuple[bool, str]:
    """Whether a connection to the broker can be made now, and why not if it cannot."""
    try:
        app = broker.client_app(settings or get_settings())
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"
