"""Celery tasks: thin adapters from a message (an experiment id) to :mod:`worker.runner`."""

from __future__ import annotations

from store.broker import DEFAULT_QUEUE, RUN_EXPERIMENT_TASK
from store.settings import get_settings
from worker.app import app
from worker.runner import LevelRunner


@app.task(name=RUN_EXPERIMENT_TASK, bind=True)
def run_experiment(self, experiment_id: str) -> str:
    """Runs the next unfinished level of an experiment, then sends itself for the one after.

    The next level goes to the queue this message came from, so an experiment sent to the GPU
    queue stays on GPU workers.
    """
    queue = (self.request.delivery_info or {}).get("routing_key") or DEFAULT_QUEUE

    def send_next() -> None:
        self.app.send_task(RUN_EXPERIMENT_TASK, args=[experiment_id], queue=queue)

    return LevelRunner(get_settings(), experiment_id, send_next).run().value
