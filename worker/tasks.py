"""Celery tasks: thin adapters from a message (ids, JSON) to :mod:`worker.level.task` and
:mod:`worker.control.offered`."""

from __future__ import annotations

from celery import Task, group

from store.broker import DEFAULT_QUEUE, RUN_CONTROL_TASK, RUN_EXPERIMENT_TASK
from store.settings import get_settings
from worker.app import app
from worker.control.offered import OfferedControl
from worker.control.run import default_worker_name
from worker.level.task import LevelTask


def _queue_of(task: Task) -> str:
    """The queue a message came from, so follow-up work stays on the same kind of worker."""
    return (task.request.delivery_info or {}).get("routing_key") or DEFAULT_QUEUE


def _worker_of(task: Task) -> str:
    """The Celery node name (unique per worker process, e.g. ``lth-cpu-123@host``)."""
    return task.request.hostname or default_worker_name()


@app.task(name=RUN_EXPERIMENT_TASK, bind=True)
def run_experiment(self: Task, experiment_id: str) -> str:
    """Runs the next unfinished level of an experiment, then sends itself for the one after.

    The next level and the level's control runs go to the queue this message came from, so an
    experiment sent to the GPU queue stays on GPU workers.
    """
    queue = _queue_of(self)

    def send_next() -> None:
        self.app.send_task(RUN_EXPERIMENT_TASK, args=[experiment_id], queue=queue)

    def send_controls(level: int, kinds: list[str]) -> None:
        group(
            self.app.signature(
                RUN_CONTROL_TASK, args=[experiment_id, level, kind], queue=queue, immutable=True
            )
            for kind in kinds
        ).apply_async()

    task = LevelTask(
        get_settings(),
        experiment_id,
        send_next,
        send_controls=send_controls,
        worker=_worker_of(self),
        queue=queue,
    )
    return task.run().value


@app.task(name=RUN_CONTROL_TASK, bind=True)
def run_control(self: Task, experiment_id: str, level: int, kind: str) -> str:
    """Trains one control run of a level that another worker is running, if still needed."""
    task = OfferedControl(
        get_settings(), experiment_id, int(level), str(kind), worker=_worker_of(self)
    )
    return task.run().value
