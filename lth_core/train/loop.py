"""The training loop: one for every run, a single model (K = 1) or K stacked members.

The hot loop touches only tensors already on the device: a batch is an index_select into the
training tensors (lth_core.train.batches), the stepper computes every member's loss and gradients
(lth_core.train.steps), the update is one fused optimizer kernel over all parameters
(lth_core.train.optim), the masks are re-applied in place after every step with one fused multiply
over all pruned weights (so pruned weights stay exactly zero whatever momentum or weight
decay does; all-ones masks are skipped), and losses stay on the device until an evaluation
reads them.

Everything else a run does is a callback (lth_core.train.callbacks): progress, cancellation, the
rewind snapshot, the early-stopping point, and what later features plug in (patience,
early-bird masks, keeping the best weights, instability analysis). The interface:

- `on_start(state)`: before the first evaluation, at `state.iteration == start_iteration`;
- `after_step(state)`: after each step's update and mask, `state.iteration` steps done
  (called only for callbacks that override it: it is on the hot path);
- `on_evaluation(state, points)`: after each evaluation (at the start, every `eval_every`
  iterations and at the end), `points[m]` the curve point just appended for member m; a
  callback may raise to abort (Cancelled), call `state.finish_member(m)` to end member m's
  training after this evaluation (in a stack the others go on while m stays frozen: stacking
  is transparent), or set `state.stop = True` to end everyone's (a run reports the
  iterations it trained);
- `on_end(state)`: after the last evaluation, before the members' modules get their weights.
`state.stepper` gives access to every member's weights (`state_dict(m)`).

A run resumes from a checkpoint (lth_core.train.checkpoint.Checkpoint, itself a callback):
its on_start, after every other callback's, puts back the weights, the optimizer's and the
generators' states, the curves and each callback's `checkpoint_state`, and moves
`state.iteration` to the checkpoint's evaluation; the loop then goes on from there without
evaluating again. Checkpoints are taken at evaluations only, where the train-loss
accumulator is empty.

With `training.test_eval == "early_stop"` an evaluation reads only the validation set and a
point's `test_accuracy` is None; `lth_core.train.callbacks.DeferredTest` evaluates the test set at
the end on the weights of the early-stopping point (and on the final ones).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lth_core.nn.data.base import Splits
from lth_core.spec import TrainingSpec
from lth_core.train.batches import Batches
from lth_core.train.optim import FusedStep, LearningRate
from lth_core.train.steps.base import Stepper


class Cancelled(Exception):
    """Raised at an evaluation when the caller's should_stop() says so."""


@dataclass
class LoopState:
    """What callbacks see of a run in progress."""

    stepper: Stepper
    start_iteration: int
    iterations: int
    iteration: int
    curves: list[list[dict[str, float]]]
    stop: bool = False
    # The optimizer and the batches, for a checkpoint (lth_core.train.checkpoint) to keep and
    # put back their state; None outside the loop.
    optimizer: FusedStep | None = None
    batches: Batches | None = None
    # Per member: set by a callback at an evaluation when that member is finished (patience,
    # early-bird). A finished member of a stack is frozen from then on (`frozen`): its weights
    # and buffers no longer change, its curve gets no further points and callbacks skip it,
    # so a stack gives each member what training it alone gives. Training ends when every
    # member is done (or a callback sets `stop`).
    done: list[bool] = field(default_factory=list)
    frozen: set[int] = field(default_factory=set)
    member_iterations: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.done = self.done or [False] * len(self.curves)
        self.member_iterations = self.member_iterations or [self.start_iteration] * len(self.curves)

    def finish_member(self, member: int) -> None:
        """Marks `member` finished at this evaluation (see `done`); the last one to finish
        ends the training."""
        self.done[member] = True
        if all(self.done):
            self.stop = True

    def active(self, member: int) -> bool:
        """Whether `member` was still training when this evaluation was made."""
        return member not in self.frozen

    # The last evaluation's per-example validation correctness, (K, N) bools on the device.
    val_correct: torch.Tensor | None = None


class Callback:
    """A hook of the loop; override what you need (see the module docstring)."""

    def on_start(self, state: LoopState) -> None:
        pass

    def after_step(self, state: LoopState) -> None:
        pass

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        pass

    def on_end(self, state: LoopState) -> None:
        pass

    def checkpoint_state(self, state: LoopState) -> tuple[dict[str, torch.Tensor], Any] | None:
        """What this callback has gathered so far, for a checkpoint at an evaluation: named
        tensors and strict-JSON data (non-finite floats allowed). None: it keeps nothing
        (a callback that keeps state across evaluations must override both methods, or a
        resumed run would lose it)."""
        return None

    def restore_state(self, state: LoopState, tensors: dict[str, torch.Tensor], data: Any) -> None:
        """Puts back what `checkpoint_state` gave (after this callback's on_start)."""


@dataclass
class LoopResult:
    """Per member: its curve; and the wall time of the whole loop."""

    curves: list[list[dict[str, float]]]
    seconds: float
    trained_iterations: int = field(default=0)
    # Per member: the iterations it trained (a member frozen early trained fewer).
    member_iterations: list[int] = field(default_factory=list)


class Freezer:
    """Holds finished members of a stack still: after every step their weights and buffers
    are written back as they were when they finished (the stacked optimizer updates every
    row; putting a frozen row back is what "no step" means for it)."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper
        self.rows: list[tuple[torch.Tensor, torch.Tensor]] = []

    def freeze(self, member: int, weights: dict[str, torch.Tensor]) -> None:
        stepper = self.stepper
        buffers: dict[str, torch.Tensor] = getattr(stepper, "buffers", {})
        for name, tensor in weights.items():
            target = stepper.params[name] if name in stepper.params else buffers.get(name)
            if target is not None:
                self.rows.append((target[member], tensor))

    def restore(self) -> None:
        for target, kept in self.rows:
            target.copy_(kept)

    @staticmethod
    def record(state: LoopState, points: list[dict[str, float]]) -> None:
        """Appends each active member's new point; a frozen member's last point stands."""
        for m, (curve, point) in enumerate(zip(state.curves, points, strict=True)):
            if state.active(m):
                curve.append(point)
            else:
                points[m] = curve[-1]

    def start(self, state: LoopState, callbacks: Sequence[Callback]) -> None:
        """Runs the callbacks' on_start; where a checkpoint there put back a stack whose
        members had partly finished, holds those still again at the weights they finished with."""
        for callback in callbacks:
            callback.on_start(state)
        if self.stepper.stacked and not all(state.done):
            for m in sorted(state.frozen):
                self.freeze(m, self.stepper.state_dict(m))

    def settle(self, state: LoopState) -> None:
        """After an evaluation's callbacks: freezes the members they finished; training
        stops when all are."""
        for m, done in enumerate(state.done):
            if done and state.active(m):
                state.frozen.add(m)
                state.member_iterations[m] = state.iteration
                if self.stepper.stacked and not all(state.done):
                    self.freeze(m, self.stepper.state_dict(m))
        if all(state.done):
            state.stop = True

    @staticmethod
    def close(state: LoopState) -> None:
        """At the end: the members still active trained to the last iteration."""
        for m in range(len(state.curves)):
            if state.active(m):
                state.member_iterations[m] = state.iteration


class Masks:
    """The members' masks as float multipliers over the pruned weights, all-ones ones left out.

    A layer with nothing pruned (every layer at level 0, excluded kinds always) would only be
    multiplied by one after every step: skipping it saves a full pass over its weights.
    """

    def __init__(self, stepper: Stepper, masks: Sequence[Mapping[str, torch.Tensor]]) -> None:
        self.weights: list[torch.Tensor] = []
        self.multipliers: list[torch.Tensor] = []
        for name in masks[0]:
            param = stepper.params[name]
            if stepper.stacked:
                m = torch.stack([mask[name].to(param.device) for mask in masks])
            else:
                (only,) = masks
                m = only[name]
            if bool(m.all()):
                continue
            self.weights.append(param)
            self.multipliers.append(m.to(device=param.device, dtype=param.dtype))

    def apply(self) -> None:
        if self.weights:
            torch._foreach_mul_(self.weights, self.multipliers)


def train_loop(
    stepper: Stepper,
    masks: Sequence[Mapping[str, torch.Tensor]],
    splits: Splits,
    cfg: TrainingSpec,
    batches: Batches,
    *,
    start_iteration: int,
    callbacks: Sequence[Callback] = (),
) -> LoopResult:
    """Trains every member from start_iteration to cfg.iterations (or until a callback stops)."""
    if batches.k != stepper.k or len(masks) != stepper.k:
        raise ValueError("the stepper, its masks and the batches must have the same members")
    started = time.perf_counter()
    k, device = stepper.k, splits.train_x.device
    mask = Masks(stepper, masks)
    with torch.no_grad():
        mask.apply()
    optimizer, learning_rate = FusedStep(list(stepper.params.values()), cfg), LearningRate(cfg)
    state = LoopState(
        stepper, start_iteration, cfg.iterations, start_iteration, [[] for _ in range(k)]
    )
    state.optimizer, state.batches = optimizer, batches
    freezer = Freezer(stepper)
    overrides = [c for c in callbacks if type(c).after_step is not Callback.after_step]
    train_loss_sum, steps_since_eval = torch.zeros(k, device=device), 0
    test_curve = cfg.test_eval == "curve"

    def evaluate() -> None:
        nonlocal train_loss_sum, steps_since_eval
        kept: list[torch.Tensor] = []
        val_loss, val_acc = stepper.evaluate(splits.val_x, splits.val_y, kept)
        state.val_correct = kept[0] if kept else None
        if test_curve:
            _, test_acc = stepper.evaluate(splits.test_x, splits.test_y)
        else:  # test_eval "early_stop": lth_core.train.callbacks.DeferredTest fills it in at the end
            test_acc = torch.full_like(val_acc, math.nan)
        rows = torch.stack([train_loss_sum.double(), val_loss, val_acc, test_acc]).tolist()
        points = [
            {
                "iteration": state.iteration,
                "train_loss": rows[0][m] / steps_since_eval if steps_since_eval else math.nan,
                "val_loss": rows[1][m],
                "val_accuracy": rows[2][m],
                "test_accuracy": rows[3][m] if test_curve else None,
            }
            for m in range(k)
        ]
        freezer.record(state, points)
        train_loss_sum, steps_since_eval = torch.zeros(k, device=device), 0
        for callback in callbacks:
            callback.on_evaluation(state, points)
        freezer.settle(state)

    freezer.start(state, callbacks)
    if state.iteration == start_iteration:
        evaluate()  # else a checkpoint's on_start resumed the run after its last evaluation
    shared = batches.shared
    for iteration in range(state.iteration, cfg.iterations):
        if state.stop:
            break
        x, y = batches(iteration)
        losses, grads = stepper.loss_and_grads(x, y, shared)
        with torch.no_grad():
            optimizer.step(grads, learning_rate(iteration))
            mask.apply()
            freezer.restore()
        train_loss_sum.add_(losses)
        steps_since_eval += 1
        state.iteration = done = iteration + 1
        for callback in overrides:
            callback.after_step(state)
        if done % cfg.eval_every == 0 or done == cfg.iterations:
            evaluate()
    freezer.close(state)
    for callback in callbacks:
        callback.on_end(state)
    stepper.finish()
    seconds = time.perf_counter() - started
    return LoopResult(state.curves, seconds, state.iteration, state.member_iterations)


def summarize(
    curve: list[dict[str, float]], best: dict[str, float], *, seconds: float, iterations: int
) -> dict[str, Any]:
    """A run's metrics: its early-stopping point `best` (lth_core.train.callbacks.EarlyStopping),
    its final test accuracy, and the curve."""
    return {
        "early_stop_iteration": int(best["iteration"]),
        "early_stop_val_loss": best["val_loss"],
        "early_stop_val_accuracy": best["val_accuracy"],
        "early_stop_test_accuracy": best["test_accuracy"],
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "iterations": iterations,
        "seconds": seconds,
        "curve": curve,
    }
