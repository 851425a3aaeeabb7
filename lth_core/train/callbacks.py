"""The loop's standard callbacks: early-stopping point, progress, cancellation, rewind snapshot.

Each is small and knows one thing; see lth_core.train.loop for the interface. Members are indexed
0..K-1 in the order the stepper holds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lth_core.pruning import hamming
from lth_core.train.loop import Callback, Cancelled, LoopState

ProgressHook = Callable[[int, dict[str, float] | None], None]


def _val_loss_key(point: dict[str, float]) -> tuple[bool, float]:
    return (math.isnan(point["val_loss"]), point["val_loss"])


class EarlyStopping(Callback):
    """Each member's early-stopping point, read as training goes: the first evaluation with
    minimum validation loss (a NaN loss is never better than a number). Patience ("stop P
    evaluations after the last improvement") is `best_at` plus `state.stop`. `correct[m]`
    keeps the per-example validation correctness at the member's best evaluation (a device
    row, no copy: each evaluation makes a new tensor), what the paired verdicts read."""

    def __init__(self) -> None:
        self.best: list[dict[str, float]] = []
        self.correct: list[torch.Tensor | None] = []

    def on_start(self, state: LoopState) -> None:
        self.best = []
        self.correct = []

    def _row(self, state: LoopState, m: int) -> torch.Tensor | None:
        return None if state.val_correct is None else state.val_correct[m]

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        if not self.best:
            self.best = list(points)
            self.correct = [self._row(state, m) for m in range(len(points))]
            return
        for m, point in enumerate(points):
            if state.active(m) and _val_loss_key(point) < _val_loss_key(self.best[m]):
                self.best[m] = point
                self.correct[m] = self._row(state, m)

    def best_at(self, member: int) -> int:
        return int(self.best[member]["iteration"])

    def checkpoint_state(self, state: LoopState) -> tuple[dict[str, torch.Tensor], Any]:
        # Each best point by its place in the curve: Patience and DeferredTest compare by
        # identity, so a resumed run's best must be the curve's own point again.
        correct = {str(m): row for m, row in enumerate(self.correct) if row is not None}
        return correct, [
            _position(curve, best) for curve, best in zip(state.curves, self.best, strict=True)
        ]

    def restore_state(self, state: LoopState, tensors: dict[str, torch.Tensor], data: Any) -> None:
        self.best = [state.curves[m][i] for m, i in enumerate(data)]
        device = _device(state)
        self.correct = [
            tensors[str(m)].to(device) if str(m) in tensors else None for m in range(len(data))
        ]


def _position(curve: list[dict[str, float]], point: dict[str, float]) -> int:
    return next(i for i, p in enumerate(curve) if p is point)


def _device(state: LoopState) -> torch.device:
    return next(iter(state.stepper.params.values())).device


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str, device: torch.device) -> dict:
    """The tensors named `prefix...`, without the prefix, on `device`."""
    n = len(prefix)
    return {k[n:]: t.to(device) for k, t in tensors.items() if k.startswith(prefix)}


class Progress(Callback):
    """Reports every evaluation of the members that have a hook (others are trained silently:
    a finished member retrained only for its stack's sake)."""

    def __init__(self, hooks: Sequence[ProgressHook | None]) -> None:
        self.hooks = list(hooks)

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        for m, (hook, point) in enumerate(zip(self.hooks, points, strict=True)):
            if hook is not None and state.active(m):
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
        if state.iteration == self.at and state.active(self.member):
            self.state = state.stepper.state_dict(self.member)

    def on_start(self, state: LoopState) -> None:
        self._take(state)

    def after_step(self, state: LoopState) -> None:
        self._take(state)

    def checkpoint_state(self, state: LoopState) -> tuple[dict[str, torch.Tensor], Any]:
        return dict(self.state or {}), self.state is not None

    def restore_state(self, state: LoopState, tensors: dict[str, torch.Tensor], data: Any) -> None:
        self.state = _prefixed(tensors, "", _device(state)) if data else None


class Patience(Callback):
    """Ends each member's training `patience` evaluations after its last validation-loss
    improvement.

    Reads the early-stopping points of `early` (registered before this callback, so it has
    seen the evaluation already). In a stack a member out of patience is finished alone
    (`LoopState.finish_member`: frozen while the others go on), so it trains exactly as long
    as it would alone. `stopped[m]` is the iteration where member m stopped (None: it did
    not); `stopped_at` the last of them.
    """

    def __init__(self, early: EarlyStopping, patience: int) -> None:
        self.early, self.patience = early, patience
        self.since: list[int] = []
        self.stopped: list[int | None] = []

    @property
    def stopped_at(self) -> int | None:
        """Where training ended for all (None when some member trained its budget)."""
        if not self.stopped or any(s is None for s in self.stopped):
            return None
        return max(s for s in self.stopped if s is not None)

    def on_start(self, state: LoopState) -> None:
        self.since, self.stopped = [], [None] * len(state.curves)

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        if not self.since:
            self.since = [0] * len(points)
            return
        for m, point in enumerate(points):
            if not state.active(m):
                continue
            self.since[m] = 0 if self.early.best[m] is point else self.since[m] + 1
            if self.since[m] >= self.patience and state.iteration < state.iterations:
                state.finish_member(m)
                self.stopped[m] = state.iteration

    def checkpoint_state(self, state: LoopState) -> tuple[dict[str, torch.Tensor], Any]:
        return {}, {"since": self.since, "stopped": self.stopped}

    def restore_state(self, state: LoopState, tensors: dict[str, torch.Tensor], data: Any) -> None:
        self.since, self.stopped = list(data["since"]), list(data["stopped"])


def load_member(stepper: object, member: int, weights: dict[str, torch.Tensor]) -> None:
    """Writes a full state dict into member `member` of a stepper, in place (no_grad)."""
    with torch.no_grad():
        if getattr(stepper, "stacked", False):
            for name, tensor in weights.items():
                params, buffers = stepper.params, stepper.buffers  # type: ignore[attr-defined]
                target = params[name] if name in params else buffers[name]
                target[member].copy_(tensor)
        else:
            live = stepper.model.state_dict()  # type: ignore[attr-defined]
            for name, tensor in weights.items():
                live[name].copy_(tensor)


class DeferredTest(Callback):
    """`training.test_eval == "early_stop"`: the test set is evaluated once, at the end.

    At each new validation minimum (`early`, registered before this one) the member's weights
    are copied (to the device they live on); at the end every member is loaded with its kept
    weights and the test set evaluated once for all of them, then once more on the final
    weights. The early-stopping point's and the last point's `test_accuracy` are filled in:
    the same numbers evaluating at those iterations gives (same weights, same kernels), for
    two test passes per run instead of one per evaluation.
    """

    def __init__(self, early: EarlyStopping, test_x: torch.Tensor, test_y: torch.Tensor) -> None:
        self.early, self.test_x, self.test_y = early, test_x, test_y
        self.kept: list[dict[str, torch.Tensor] | None] = []

    def on_start(self, state: LoopState) -> None:
        self.kept = [None] * state.stepper.k

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        for m, point in enumerate(points):
            if state.active(m) and self.early.best[m] is point:
                self.kept[m] = state.stepper.state_dict(m)

    def checkpoint_state(self, state: LoopState) -> tuple[dict[str, torch.Tensor], Any]:
        tensors = {
            f"{m}/{name}": t for m, kept in enumerate(self.kept) for name, t in (kept or {}).items()
        }
        return tensors, [kept is not None for kept in self.kept]

    def restore_state(self, state: LoopState, tensors: dict[str, torch.Tensor], data: Any) -> None:
        device = _device(state)
        self.kept = [
            _prefixed(tensors, f"{m}/", device) if kept else None for m, kept in enumerate(data)
        ]

    def on_end(self, state: LoopState) -> None:
        stepper = state.stepper
        final = [curve[-1] for curve in state.curves]
        _, accuracy = stepper.evaluate(self.test_x, self.test_y)
        for point, acc in zip(final, accuracy.tolist(), strict=True):
            point["test_accuracy"] = acc
        if all(self.early.best[m] is final[m] for m in range(stepper.k)):
            return
        now = [stepper.state_dict(m) for m in range(stepper.k)]
        for m, kept in enumerate(self.kept):
            if kept is not None:
                load_member(stepper, m, kept)
        _, accuracy = stepper.evaluate(self.test_x, self.test_y)
        for m, acc in enumerate(accuracy.tolist()):
            self.early.best[m]["test_accuracy"] = acc
        for m, weights in enumerate(now):
            load_member(stepper, m, weights)


def mask_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Normalized Hamming distance: the fraction of mask entries that differ (pruning.hamming's
    overall distance)."""
    return hamming(a, b)["overall"]


class EarlyBird(Callback):
    """Early-bird masks (You et al. 2020) for member `member` (the level's ticket).

    At every evaluation the would-be mask (`would_be(weights)`: the next level's pruning from
    the member's weights now) is computed; once the normalized Hamming distance between
    consecutive would-be masks has stayed below `distance` for `window` evaluations in a row,
    the mask is drawn there: the member's training ends at this evaluation (a stack's other
    members, the controls, train on to their own end), so the run's trained weights are
    the ones the next level is pruned from (its mask is the drawn one). `drawn_at` is that
    iteration (None if the rule never held: the level trained its full budget);
    `distances` the distance at each evaluation after the first.
    """

    def __init__(
        self,
        would_be: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        distance: float,
        window: int,
        member: int = 0,
    ) -> None:
        self.would_be, self.distance, self.window, self.member = would_be, distance, window, member
        self.previous: dict[str, torch.Tensor] | None = None
        self.below = 0
        self.drawn_at: int | None = None
        self.distances: list[float] = []

    def on_start(self, state: LoopState) -> None:
        self.previous, self.below, self.drawn_at, self.distances = None, 0, None, []

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        if self.drawn_at is not None:
            return
        mask = self.would_be(state.stepper.state_dict(self.member))
        if self.previous is not None:
            d = mask_distance(mask, self.previous)
            self.distances.append(d)
            self.below = self.below + 1 if d < self.distance else 0
            if self.below >= self.window:
                self.drawn_at = state.iteration
                state.finish_member(self.member)  # in a stack its controls go on
        self.previous = mask

    def checkpoint_state(self, state: LoopState) -> tuple[dict[str, torch.Tensor], Any]:
        data = {"below": self.below, "drawn_at": self.drawn_at, "distances": self.distances}
        return dict(self.previous or {}), {**data, "previous": self.previous is not None}

    def restore_state(self, state: LoopState, tensors: dict[str, torch.Tensor], data: Any) -> None:
        self.below, self.drawn_at = data["below"], data["drawn_at"]
        self.distances = list(data["distances"])
        self.previous = _prefixed(tensors, "", _device(state)) if data["previous"] else None
