"""Command lines for worker processes, shared by ``lth worker`` and ``lth serve``.

Workers run with gossip, mingle and event heartbeats off: they share nothing through the broker
(the database coordinates them), and on Redis those features are a steady stream of traffic
that buys nothing here.
"""

from __future__ import annotations

import os
import sys

from store.broker import CPU_QUEUE, DEFAULT_QUEUE, GPU_QUEUE


def default_queues(gpu: bool) -> list[str]:
    """Every worker takes default work; a GPU or CPU worker also takes work sent to its kind."""
    return [DEFAULT_QUEUE, GPU_QUEUE if gpu else CPU_QUEUE]


def node_name(kind: str) -> str:
    """A node name unique on this host (several workers may run side by side)."""
    return f"lth-{kind}-{os.getpid()}@%h"


def celery_worker_args(
    queues: list[str], *, name: str, concurrency: int = 1, loglevel: str = "INFO"
) -> list[str]:
    """Arguments after ``celery -A worker.app`` that start one worker."""
    return [
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",
        "--hostname",
        name,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        loglevel,
    ]


def lth_worker_argv(gpus: str, queues: list[str] | None, loglevel: str) -> list[str]:
    """``lth worker ...`` as a child process (``python -m cli.main``, no console script needed)."""
    argv = [sys.executable, "-m", "cli.main", "worker", "--gpus", gpus, "--loglevel", loglevel]
    if queues:
        argv += ["--queues", ",".join(queues)]
    return argv
