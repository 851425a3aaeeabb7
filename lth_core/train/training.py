"""Training K runs of masked networks at once (K = 1: one run) through the one loop.

`train_members` assembles a run: the stepper for its members (lth_core.train.steps), their batches
(lth_core.train.batches), the standard callbacks (lth_core.train.callbacks) and the caller's, then the
loop (lth_core.train.loop), and returns each member's metrics and curve. Per step the loop avoids
what costs time without computing anything (measured in bench/speed.py): the optimizer is the
fused kernel called directly (FusedStep), the learning rate is not rewritten while the
schedule is flat, all-ones masks are not applied, and LeNet's gradients are computed without
the autograd graph (MLPStep). Each of these gives the same bits as the plain PyTorch way on
CPU (tests/test_bench_hot_loop.py).

`train` (one run) and `lth_core.train.stacked.train_stacked` (K runs) are the same call with the
arguments the benchmarks and tests use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lth_core.nn.data.base import Splits
from lth_core.results.paired import pack_correct
from lth_core.spec import TrainingSpec
from lth_core.train.batches import Batches, BatchOrder
from lth_core.train.callbacks import (
    Cancellation,
    DeferredTest,
    EarlyStopping,
    Patience,
    Progress,
    ProgressHook,
    Snapshot,
)
from lth_core.train.checkpoint import Checkpoint, CheckpointSlot
from lth_core.train.loop import Callback, Cancelled, summarize, train_loop
from lth_core.train.optim import FusedStep, LearningRate, lr_factor
from lth_core.train.steps import MLPStep, stepper_for
from lth_core.train.steps.module import eval_chunk_size, evaluate


@dataclass(frozen=True)
class ProgressEvent:
    level: int
    kind: str
    iteration: int
    iterations: int
    record: dict[str, float] | None = None
    # Every run training with this one as one stack (the level's members), `kind` included;
    # empty when it trains alone.
    kinds: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What is training: ``ticket``, or ``ticket+random_reinit`` for a stack."""
        return "+".join(self.kinds) if len(self.kinds) > 1 else self.kind


@dataclass(frozen=True)
class Member:
    """One run in a training: its module (trained in place), mask, data and hooks."""

    model: nn.Module
    mask: Mapping[str, torch.Tensor]
    data_seed: int
    augment_seed: int | None = None  # None: no augmentation
    progress: ProgressHook | None = None
    snapshot_at: int | None = None  # iteration whose full state dict to keep (rewinding)
    keep_at: tuple[int, ...] = ()  # further iterations whose state dicts to keep (instability)


@dataclass
class MemberResult:
    metrics: dict[str, Any]
    snapshot: dict[str, torch.Tensor] | None = None
    kept: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def train_members(
    members: Sequence[Member],
    splits: Splits,
    cfg: TrainingSpec,
    *,
    start_iteration: int,
    should_stop: Callable[[], bool] | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoints: CheckpointSlot | None = None,
) -> list[MemberResult]:
    """Trains every member from start_iteration; more than one member trains as a stack.

    `seconds` of each result is its share (1/K) of the wall time. The members' modules hold
    their trained weights afterwards. With `checkpoints` the training resumes from its newest
    checkpoint and writes new ones when due (lth_core.train.checkpoint); a resumed run's
    `cost` says from which iteration (`resumed_from`).
    """
    if not members:
        raise ValueError("at least one member is needed")
    augment = [m.augment_seed for m in members if m.augment_seed is not None]
    stepper = stepper_for([m.model for m in members])
    batches = Batches(
        splits, cfg.batch_size, [m.data_seed for m in members], augment[0] if augment else None
    )
    early = EarlyStopping()
    snapshots = {
        i: Snapshot(m.snapshot_at, i) for i, m in enumerate(members) if m.snapshot_at is not None
    }
    kept = {(i, k): Snapshot(k, i) for i, m in enumerate(members) for k in m.keep_at}
    standard: list[Callback] = [early, *snapshots.values(), *kept.values()]
    patience = Patience(early, cfg.patience) if cfg.patience is not None else None
    if patience is not None:
        standard.append(patience)
    if cfg.test_eval == "early_stop":
        standard.append(DeferredTest(early, splits.test_x, splits.test_y))
    if any(m.progress for m in members):
        standard.append(Progress([m.progress for m in members]))
    # The checkpoint comes after every callback whose state it keeps, before the cancellation
    # (a run stopped at a due evaluation keeps that checkpoint). A stopped run writes no
    # checkpoint of its own: its stop may be a lost lease, after which it writes nothing.
    every = [*standard, *callbacks]
    checkpoint = Checkpoint(checkpoints, every) if checkpoints is not None else None
    if checkpoint is not None:
        every.append(checkpoint)
    if should_stop is not None:
        every.append(Cancellation(should_stop))
    result = train_loop(
        stepper,
        [m.mask for m in members],
        splits,
        cfg,
        batches,
        start_iteration=start_iteration,
        callbacks=every,
    )
    seconds = result.seconds / len(members)
    device, threads = splits.train_x.device.type, torch.get_num_threads()
    results = []
    for i, curve in enumerate(result.curves):
        trained = result.member_iterations[i]
        # What the run cost besides its wall `seconds` (kept where it always was, so a run's
        # record without `seconds` stays a pure function of spec, device and thread count).
        cost = {"iterations": trained - start_iteration, "device": device, "threads": threads}
        if checkpoint is not None and checkpoint.resumed_from is not None:
            cost["resumed_from"] = checkpoint.resumed_from
        metrics = summarize(curve, early.best[i], seconds=seconds, iterations=trained)
        if patience is not None:
            metrics["stopped_at"] = patience.stopped[i]
        metrics["cost"] = cost
        metrics.update(_val_correct(early, i))
        results.append(
            MemberResult(
                metrics,
                snapshots[i].state if i in snapshots else None,
                {k: s.state for (m, k), s in kept.items() if m == i and s.state is not None},
            )
        )
    return results


def _val_correct(early: EarlyStopping, member: int) -> dict[str, Any]:
    """The member's per-example validation correctness at its early stop, packed (read after
    training: one host copy per run)."""
    row = early.correct[member] if early.correct else None
    if row is None:
        return {}
    return {"val_correct": pack_correct(row.cpu().numpy(), early.best_at(member))}


@dataclass
class RunHooks:
    """How `train` talks to its caller: progress out, cancellation in, snapshots of weights."""

    progress: ProgressHook | None = None
    should_stop: Callable[[], bool] | None = None
    snapshot_at: int | None = None  # iteration whose weights to keep (rewinding)
    snapshot: dict[str, torch.Tensor] | None = field(default=None)


def train(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    splits: Splits,
    cfg: TrainingSpec,
    *,
    augment: bool,
    start_iteration: int,
    data_seed: int,
    augment_seed: int,
    hooks: RunHooks,
) -> dict[str, Any]:
    """Trains one run from start_iteration to cfg.iterations; returns metrics and the curve."""
    member = Member(
        model,
        mask,
        data_seed,
        augment_seed if augment else None,
        hooks.progress,
        hooks.snapshot_at,
    )
    (result,) = train_members(
        [member], splits, cfg, start_iteration=start_iteration, should_stop=hooks.should_stop
    )
    hooks.snapshot = result.snapshot
    return result.metrics


__all__ = [
    "BatchOrder",
    "Cancelled",
    "FusedStep",
    "LearningRate",
    "MLPStep",
    "Member",
    "MemberResult",
    "ProgressEvent",
    "RunHooks",
    "eval_chunk_size",
    "evaluate",
    "lr_factor",
    "train",
    "train_members",
]
