"""Progress from the engine into the database, throttled so training never waits on SQL.

The engine reports at most one event per evaluation interval; on a fast GPU that can still be
many per second, so a write happens only when ``min_interval`` has passed (carrying the latest
evaluation's metrics), when a run starts (so a new level or control shows up at once), and at
a run's final evaluation. Writing progress is best effort: a failed write
is logged and skipped, never allowed to abort a level.

Each write carries what is training (every member of a stacked level, `kinds`), the speed
measured on the run and the time left for the level and the experiment (lth_core.results.eta, once
`plan` is the experiment), and when it was written, so the API can show an ETA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from lth_core.results.eta import Estimate, SettlingEta, Speed, iterations_left
from store import experiments as repo
from store.db import session_scope
from store.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between progress writes (evaluations in between only update the metrics shown).
PROGRESS_INTERVAL_SECONDS = 0.5


class ProgressWriter:
    """A ``progress`` callback for ``lth_core.experiment.Experiment``."""

    def __init__(
        self,
        write: Callable[[dict[str, Any]], None],
        *,
        levels: int,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._levels = levels
        self._min_interval = min_interval
        self._clock = clock
        self._last_write = float("-inf")
        self._last_run: tuple[int, str] | None = None
        self._metrics: dict[str, float] | None = None
        self._speed = Speed(clock)  # the run's own speed, shown as it/s
        self._eta = SettlingEta(clock)  # the ETA, smoothed per kind of run (no jumps)
        #: The experiment (lth_core.results.eta's plan: runs per level, stacking, runs done), set by
        #: the runner once it is built; without it no ETA is written.
        self.plan: Any = None

    def snapshot(
        self,
        level: int,
        kind: str,
        iteration: int,
        iterations: int,
        kinds: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The progress document (the API shows ``level``, ``levels``, ``iteration``...)."""
        kinds = kinds or (kind,)
        doc: dict[str, Any] = {
            "level": level,
            "levels": self._levels,
            "kind": "+".join(kinds),
            "kinds": list(kinds),
            "iteration": iteration,
            "iterations": iterations,
            "metrics": self._metrics,
            "written_at": time.time(),
        }
        rate = self._speed.rate
        if self.plan is not None:
            try:
                left = iterations_left(self.plan, level, iteration, kinds)
            except Exception:  # an estimate must never stop training
                log.debug("no estimate", exc_info=True)
            else:
                settled = self._eta.estimate(left)
                shown = Estimate(rate, settled.level_eta_seconds, settled.eta_seconds)
                doc.update(shown.as_progress())
        elif rate is not None:
            doc["iterations_per_second"] = round(rate, 3)
        return doc

    def __call__(self, event: Any) -> None:
        kinds = tuple(getattr(event, "kinds", ()) or (event.kind,))
        if event.kind != kinds[0]:
            return  # a stack is reported once per evaluation, through its first member
        run = (event.level, event.kind)
        self._speed.observe(run, event.iteration)
        self._eta.observe(run, "+".join(kinds), event.iteration)
        new_run = run != self._last_run
        if new_run:
            self._last_run = run
            self._metrics = None
        if event.record is not None:
            self._metrics = dict(event.record)
        now = self._clock()
        last = event.record is not None and event.iteration >= event.iterations
        if not (new_run or last) and now - self._last_write < self._min_interval:
            return
        self.write(self.snapshot(event.level, event.kind, event.iteration, event.iterations, kinds))

    def write(self, progress: dict[str, Any]) -> None:
        self._last_write = self._clock()
        try:
            self._write(progress)
        except Exception:
            log.warning("could not record progress; continuing", exc_info=True)


def database_progress(settings: Settings, experiment_id: str, *, levels: int) -> ProgressWriter:
    """A ProgressWriter that records into the experiment's row (what the API shows)."""

    def write(progress: dict[str, Any]) -> None:
        with session_scope(settings) as session:
            repo.record_progress(session, experiment_id, progress)

    return ProgressWriter(write, levels=levels, min_interval=PROGRESS_INTERVAL_SECONDS)
