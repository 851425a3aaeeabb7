"""The loop's standard callbacks: early-stopping point, progress, cancellation, rewind snapshot.

Each is small and knows one thing; see lth_core.loop for the interface. Members are indexed
0..K-1 in the order the stepper holds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from lth_core.loop import Callback, Cancelled, LoopState

ProgressHook = Callable[[int, dict[str, float] | None], None]


def _val_loss_key(point: dict[str, float]) -> tuple[bool, float]:
    return (math.isnan(point["val_loss"]), point["val_loss"])


class EarlyStopping(Callback):
    """Each member's early-stopping point, read as training goes: the first evaluation with
    minimum validation loss (a NaN loss is never better than a number). Patience ("stop P
    evaluations after the last improvement") is `best_at` plus `state.stop`."""

    def __init__(self) -> None:
        self.best: list[dict[str, float]] = []

    def on_start(self, state: LoopState) -> None:
        self.best = []

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        if not self.best:
            self.best = list(points)
            return
        for m, point in enumerate(points):
            if _val_loss_key(point) < _val_loss_key(self.best[m]):
                self.best[m] = point

    def best_at(self, member: int) -> int:
        return int(self.best[member]["iteration"])


class Progress(Callback):
    """Reports every evaluation of the members that have a hook (others are trained silently:
    a finished member retrained only for its stack's sake)."""

    def __init__(self, hooks: Sequence[ProgressHook | None]) -> None:
        self.hooks = list(hooks)

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        for hook, point in zip(self.hooks, points, strict=True):
            if hook is not None:
                hook(state.iteration, point)


class Cancellation(Callback):
    """Raises Cancelled at the first evaluation where should_stop() says so."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        if self.should_stop():
            raise Cancelled(f"stopped at iteration {state.iteration}")


class Snapshot(Callback):
    """Keeps a copy of one member's full state dict at iteration `at` (rewinding's theta_k)."""

    def __init__(self, at: int, member: int = 0) -> None:
        self.at, self.member = at, member
        self.state: dict[str, torch.Tensor] | None = None

    def _take(self, state: LoopState) -> None:
        if state.iteration == self.at:
            self.state = state.stepper.state_dict(self.member)

    def on_start(self, state: LoopState) -> None:
        self._take(state)

    def after_step(self, state: LoopState) -> None:
        self._take(state)
