"""This worker's training counters into ``worker_stats`` (the API's ``/metrics`` renders them).

A ``progress`` callback for the engine, beside the progress writer: it counts the iterations
trained between the engine's progress events (a stacked level's event stands for each of its
members) and writes them, with the rate over the interval, at most every heartbeat interval
and when the task ends (:meth:`close`, which also sets the rate to 0: the worker is between
tasks). Writing is best effort, as for progress: a failed write keeps its count for the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from store import worker_stats
from store.db import session_scope
from store.settings import Settings

log = logging.getLogger(__name__)


class WorkerStats:
    """Counts iterations trained by worker ``node`` and pushes them to the database."""

    def __init__(
        self,
        settings: Settings,
        node: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._node = node
        self._clock = clock
        self._last: dict[tuple[int, str], int] = {}  # run -> its last iteration seen
        self._pending = 0  # iterations not yet written
        self._window = 0  # iterations since the last write (the rate's numerator)
        self._since = clock()

    def __call__(self, event: Any) -> None:
        kinds = tuple(getattr(event, "kinds", ()) or (event.kind,))
        if event.kind != kinds[0]:
            return  # a stack reports once per evaluation, through its first member
        run = (event.level, event.kind)
        before = self._last.get(run)
        self._last[run] = event.iteration
        if before is not None and event.iteration > before:
            trained = (event.iteration - before) * len(kinds)
            self._pending += trained
            self._window += trained
        if self._clock() - self._since >= self._settings.heartbeat_seconds:
            self.flush()

    def flush(self, *, idle: bool = False) -> None:
        """Writes what was counted since the last write (``idle``: the speed is now 0)."""
        now = self._clock()
        elapsed = now - self._since
        rate = 0.0 if idle or elapsed <= 0 else self._window / elapsed
        try:
            with session_scope(self._settings) as session:
                worker_stats.record(session, self._node, self._pending, rate)
        except Exception:
            log.warning("could not record this worker's counters; keeping them", exc_info=True)
            return
        self._pending = 0
        self._window = 0
        self._since = now

    def close(self) -> None:
        """The task ended: write the rest, speed 0."""
        self.flush(idle=True)


def tee(*callbacks: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """One progress callback calling each of ``callbacks`` (None ones left out) in turn."""
    chosen = [c for c in callbacks if c is not None]

    def call(event: Any) -> None:
        for callback in chosen:
            callback(event)

    return call
