"""Celery settings for long, expensive, GPU-bound tasks, derived from the service's Settings.

Each setting answers one failure mode of long jobs on a Redis broker:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only when its
  task has returned, and put back when the child process dies, so a crash never loses work.
* ``worker_prefetch_multiplier = 1`` with concurrency 1: a busy worker holds no second message
  that another, idle worker could have run.
* ``worker_max_tasks_per_child = 1``: a fresh child per task (one level), so GPU memory is
  returned to the driver and CUDA is only ever initialized in a child that will exit.
* Time limits from settings, with a soft limit before the hard one so the task can record a
  clean failure; the visibility timeout (store.broker) is longer than the hard limit.
* ``broker_transport``: kombu's Redis or filesystem transport with unreadable messages
  dead-lettered (worker.transport), so one bad message never stops a worker.
* ``worker_cancel_long_running_tasks_on_connection_loss = False``: a Redis blip must not kill a
  level that is hours in; if Redis re-delivers its message, the database claim stops the copy.
"""

from __future__ import annotations

from typing import Any

from store.broker import celery_config, is_embedded
from store.settings import Settings

#: Seconds between the soft time limit (the task records a failure) and the hard kill.
SOFT_LIMIT_GRACE_SECONDS = 60.0


def soft_time_limit(settings: Settings) -> float:
    """The soft limit: the hard limit less a grace, but never below half of it."""
    hard = settings.task_time_limit_seconds
    return max(hard / 2, hard - SOFT_LIMIT_GRACE_SECONDS)


def worker_config(settings: Settings) -> dict[str, Any]:
    """Everything the worker's Celery app needs, on top of what senders share."""
    return {
        **celery_config(settings),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "worker_max_tasks_per_child": 1,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_soft_time_limit": soft_time_limit(settings),
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_track_started": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "broker_heartbeat": 0,
        # kombu's transports, except that an unreadable message is dead-lettered instead of
        # stopping the worker (worker.transport).
        "broker_transport": broker_transport(settings),
    }


def broker_transport(settings: Settings) -> str | None:
    """The worker's transport class for the configured broker (None: kombu's own, for a
    broker other than the embedded one or plain ``redis://``)."""
    if is_embedded(settings):
        return "worker.transport:FilesystemTransport"
    if (settings.broker_url or "").startswith("redis://"):
        return "worker.transport:RedisTransport"
    return None
