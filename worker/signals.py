"""Worker lifecycle hooks: the reconciler runs in the main process, from start to shutdown, and
keeps this worker's row in ``workers`` (its queues: worker.presence) fresh.

It gets its own engine, created in the main process and never used by the forked children
(each child opens its own connections through ``store.db``), so no connection crosses a fork.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready, worker_shutting_down

from store.broker import RUN_EXPERIMENT_TASK, pending_experiments
from store.db import init_db, make_engine, session_factory
from store.settings import get_settings
from worker.presence import Presence, consumed_queues
from worker.reconciler import Reconciler, ReconcilerThread

log = logging.getLogger(__name__)

_thread: ReconcilerThread | None = None


@worker_ready.connect
def start_reconciler(sender: Any = None, **_: Any) -> None:
    """Starts the reconciler when the worker is ready to consume (first pass right away)."""
    global _thread
    settings = get_settings()
    engine = make_engine(
        settings.resolved_database_url, busy_timeout_seconds=settings.db_busy_timeout_seconds
    )
    init_db(engine)
    celery_app = sender.app if sender is not None else None

    def send(experiment_id: str, queue: str) -> None:
        if celery_app is None:
            from store.broker import send_experiment

            send_experiment(settings, experiment_id, queue)
        else:
            celery_app.send_task(RUN_EXPERIMENT_TASK, args=[experiment_id], queue=queue)

    reconciler = Reconciler(
        settings,
        session_factory(engine),
        send,
        lambda queues: pending_experiments(settings, queues),
    )
    node = getattr(sender, "hostname", None) or "lth-worker"
    presence = Presence(settings, session_factory(engine), node, consumed_queues(sender))
    _thread = ReconcilerThread(reconciler, engine, presence=presence).start()
    log.info("reconciler started (every %.1f s), queues %s", reconciler.interval, presence.queues)


@worker_shutting_down.connect
def stop_reconciler(**_: Any) -> None:
    global _thread
    if _thread is not None:
        _thread.stop()
        _thread = None
