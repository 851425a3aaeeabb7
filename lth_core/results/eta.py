"""How long an experiment still needs: from its measured speed and the training left.

The unit is training iterations one after another: a level whose runs train as one stack
costs `iterations` of them, a level trained run by run costs `iterations` per run. The speed
is measured on the run in progress (lth_core.results.eta.Speed), so the estimate is "at the speed of
the runs so far". It is an upper bound where controls run on other workers in parallel, or
where a run stops early. Torch-free: the worker writes the estimate into the experiment's
progress, `lth run` shows it, and the API passes it on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class _Plan(Protocol):
    spec: Any

    def runs_at_level(self, level: int) -> list[str]: ...

    def stacks_level(self, level: int) -> bool: ...

    def is_run_done(self, level: int, kind: str) -> bool: ...


def iterations_left(
    plan: _Plan, level: int, iteration: int, training: Sequence[str]
) -> tuple[int, int]:
    """(left in this level, left in the later levels), in iterations trained one after
    another, while the runs `training` of `level` are at `iteration`."""
    spec = plan.spec
    total = spec.training.iterations
    rewinding = spec.reset.mode == "rewind"

    def length(lv: int) -> int:
        return total - (spec.reset.rewind_iteration if rewinding and lv > 0 else 0)

    this = max(0, total - iteration)
    if not plan.stacks_level(level):
        waiting = [
            k
            for k in plan.runs_at_level(level)
            if k not in training and not plan.is_run_done(level, k)
        ]
        this += len(waiting) * length(level)
    later = sum(
        length(lv) * (1 if plan.stacks_level(lv) else len(plan.runs_at_level(lv)))
        for lv in range(level + 1, spec.pruning.levels + 1)
    )
    return this, later


class Speed:
    """Iterations per second of the run in progress, measured between its evaluations (a new
    run starts a new measurement; until it has one, the last run's speed stands)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rate: float | None = None
        self._run: object = None
        self._first: tuple[float, int] | None = None

    def observe(self, run: object, iteration: int) -> float | None:
        now = self.clock()
        if run != self._run or self._first is None:
            self._run, self._first = run, (now, iteration)
            return self.rate
        t0, i0 = self._first
        if iteration > i0 and now > t0:
            self.rate = (iteration - i0) / (now - t0)
        return self.rate


class SettlingEta:
    """An ETA that settles instead of jumping: smoothed speeds per kind of run, and no change
    of more than a factor of two between consecutive estimates without a reason.

    Measured on a real experiment, the per-run speed above gave 4:49 → 38:00 → 13:45 → 8:31
    → 13:58 for 6:50 of work: each run restarted the measurement, its first interval (a run's
    start: evaluation, data, the mask) said little, and the time between runs was in no
    measurement, so every run's start moved the ETA. Here the speed is wall time per
    iteration *including* the gaps between runs, kept per run kind (``ticket`` alone at level
    0 trains at another speed than ``ticket+random_reinit`` stacked later), as exponentially
    weighted sums with a time constant of ``tau`` seconds (a new run of a kind continues its
    kind's measurement). The ETA shown then moves from what the last one predicted (it minus
    the time since) towards the new estimate, by at most a factor of two per update; a new
    kind of run (the first stacked level) is a reason, and moves it at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, tau: float = 30.0) -> None:
        self.clock, self.tau = clock, tau
        self._sums: dict[str, tuple[float, float]] = {}  # kind -> (iterations, seconds)
        self._last: tuple[float, object, int] | None = None  # time, run, iteration
        self._kind: str | None = None
        self._shown: tuple[float, float] | None = None  # (eta, when)

    def observe(self, run: object, kind: str, iteration: int) -> None:
        """A progress event: ``run`` identifies the run (level and what trains), ``kind`` its
        kind (``ticket+random_reinit``), ``iteration`` where it is."""
        now = self.clock()
        if self._last is not None:
            then, last_run, last_iteration = self._last
            done = iteration - last_iteration if run == last_run else 0
            seconds = max(0.0, now - then)
            iterations, total = self._sums.get(kind, (0.0, 0.0))
            keep = math.exp(-seconds / self.tau)
            self._sums[kind] = (iterations * keep + max(0, done), total * keep + seconds)
        self._last = (now, run, iteration)
        if self._kind != kind:
            self._kind, self._shown = kind, None  # a new kind: a reason to move at once

    def rate(self, kind: str | None = None) -> float | None:
        """Iterations per second of ``kind`` (default: the one training), gaps included."""
        iterations, seconds = self._sums.get(kind or self._kind or "", (0.0, 0.0))
        return iterations / seconds if iterations > 0 and seconds > 0 else None

    def estimate(self, left: tuple[int, int]) -> Estimate:
        """The level's and the experiment's ETA for ``left`` = (this level, later levels)."""
        rate = self.rate()
        raw = estimate(left, rate)
        if raw.eta_seconds is None:
            return raw
        now = self.clock()
        eta = raw.eta_seconds
        if self._shown is not None:
            shown, when = self._shown
            expected = shown - (now - when)
            if expected > 0:
                eta = min(max(eta, expected / 2), expected * 2)
        self._shown = (eta, now)
        this, later = left
        level = eta * this / (this + later) if this + later else 0.0
        return Estimate(rate, level, eta)


@dataclass(frozen=True)
class Estimate:
    iterations_per_second: float | None
    level_eta_seconds: float | None
    eta_seconds: float | None

    def as_progress(self) -> dict[str, float | None]:
        """The keys the worker writes into an experiment's progress (the API shows them)."""
        return {
            "iterations_per_second": _round(self.iterations_per_second, 3),
            "level_eta_seconds": _round(self.level_eta_seconds, 1),
            "eta_seconds": _round(self.eta_seconds, 1),
        }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def estimate(left: tuple[int, int], rate: float | None) -> Estimate:
    this, later = left
    if not rate or rate <= 0:
        return Estimate(None, None, None)
    return Estimate(rate, this / rate, (this + later) / rate)


def clock_text(seconds: float | None) -> str:
    """``1:02:03``, ``4:05``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


__all__ = ["Estimate", "SettlingEta", "Speed", "clock_text", "estimate", "iterations_left"]
