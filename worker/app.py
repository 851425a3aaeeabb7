"""The worker's Celery app: ``celery -A worker.app worker`` (or ``lth worker``) finds ``app``.

Settings are read once from the environment when this module is imported, so a worker process
serves one database and one broker.
"""

from __future__ import annotations

from celery import Celery

from store.settings import Settings, get_settings
from worker.config import worker_config


def make_app(settings: Settings) -> Celery:
    """A Celery app configured for these settings, with the tasks and signal hooks attached."""
    celery_app = Celery("lth", include=["worker.tasks"])
    celery_app.conf.update(worker_config(settings))
    return celery_app


app = make_app(get_settings())

from worker import signals  # noqa: E402,F401  (connects the reconciler to worker start)
