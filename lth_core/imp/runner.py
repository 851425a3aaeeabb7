"""Training a level's runs: one by one, or stacked as one model where that is exact and pays,
each published when it finishes (lth_core.imp.run_plan.publish_run)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch

from lth_core.imp.masks import LevelMasks
from lth_core.imp.plans import Planner
from lth_core.imp.run_plan import RunPlan, on_device, publish_run
from lth_core.nn.data import Splits
from lth_core.nn.models import PrunableModel
from lth_core.registry.controls import control
from lth_core.results.paired import pack_correct
from lth_core.runs import TICKET, parse_run_id, split_kind
from lth_core.spec import ExperimentSpec
from lth_core.spec.experiment_spec import data_unit, repeats_at
from lth_core.storage.store import ArtifactStore
from lth_core.train import stacked
from lth_core.train.checkpoint import DEFAULT_SECONDS, CheckpointSlot
from lth_core.train.loop import summarize
from lth_core.train.steps.module import eval_chunk_size, evaluate
from lth_core.train.training import Member, ProgressEvent, train_members

Hook = Callable[[int, dict[str, float] | None], None]


def trains(kind: str) -> bool:
    """Whether run `kind` is trained (a supermask is only evaluated)."""
    base, _ = split_kind(parse_run_id(kind)[0])
    return base == TICKET or control(base).trains


class Runner:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: ArtifactStore,
        device: torch.device,
        planner: Planner,
        masks: LevelMasks,
        splits: Callable[[], Splits],
        build: Callable[[int | None], PrunableModel],
    ) -> None:
        """`splits()`: the data on the device (loaded on first use)."""
        self.spec, self.store, self.device = spec, store, device
        self.planner, self.masks, self.splits, self.build = planner, masks, splits, build
        self.progress: Callable[[ProgressEvent], None] | None = None
        self.should_stop: Callable[[], bool] | None = None
        # Seconds of training between checkpoints besides `training.checkpoint_every`
        # (LTH_CHECKPOINT_SECONDS; None or 0: by iterations only).
        self.checkpoint_seconds: float | None = DEFAULT_SECONDS

    def train_run(
        self,
        level: int,
        kind: str,
        *,
        metrics_key: str | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        plan = self.planner.plan(level, kind)
        keys = {kind: metrics_key} if metrics_key is not None else {}
        if not trains(kind):
            return self._evaluate_only(plan, metrics_key)
        return self.train([plan], {kind}, keys, should_stop or self.should_stop)[0]

    def stacks_level(self, level: int, stack: bool | None = None) -> bool:
        """Whether the level's runs train as one stacked model (lth_core.train.stacked).

        Depends only on the spec, the device type, torch's thread count and the level, never
        on which of its runs are done: a level interrupted half way is stacked again when it
        resumes. `stack=True` forces stacking where it is exact, False never stacks. The
        trials of a level stack together with its controls (each trial with its own data
        order); runs that are only evaluated (supermask) are never part of a stack."""
        spec = self.spec
        members = len([k for k in self.planner.runs_at_level(level) if trains(k)])
        if stack is not None:
            exact = stacked.why_not_stackable(spec.model, spec.training, spec.dataset.augment)
            return stack and exact is None and members > 1
        return stacked.should_stack(
            spec.model, spec.training, spec.dataset.augment, self.device, members
        )

    def stack_groups(self, kinds: Sequence[str], level: int | None = None) -> list[list[str]]:
        """Which of a stacked level's runs train together. Runs of one trial share their
        batches; different trials each need their own (a (K, B, ...) batch). On a GPU one
        stack of everything pays; on a CPU a stack of trials with their own batches cost 4x
        one-by-one training (LeNet, 3 trials, 2 threads) where a stack sharing one batch
        saves time, so a CPU stacks each trial's runs on their own. A group of one trains
        alone. The verification's repeats (at `level`) have data orders of their own too, so
        a CPU stacks each (trial, repeat) unit on its own. Depends only on the device type,
        the spec and the level."""
        units = repeats_at(self.spec, level) if level is not None else 1
        if self.device.type == "cuda" or (self.spec.trials == 1 and units == 1):
            return [list(kinds)]
        by_unit: dict[tuple[int, int], list[str]] = {}
        for kind in kinds:
            _, trial, repeat = parse_run_id(kind)
            unit = data_unit(self.spec, level, repeat) if level is not None else 0
            by_unit.setdefault((trial, unit), []).append(kind)
        return list(by_unit.values())

    def train_runs(
        self, level: int, pending: Sequence[str], *, stack: bool | None = None
    ) -> list[dict[str, Any]]:
        """Trains the level's `pending` runs, stacked where `stacks_level(level, stack)` says.

        A stacked level always trains all of its runs together, also those already done (only
        the pending ones are written): a stacked member's bits depend on its fellow members,
        so a resumed level gives the bits an uninterrupted one gives. Stacked runs equal
        one-by-one runs to float tolerance, not bit for bit."""
        if not pending:
            return []
        if not self.stacks_level(level, stack):
            return [self.train_run(level, kind) for kind in pending]
        trained = [k for k in self.planner.runs_at_level(level) if trains(k)]
        done = []
        for group in self.stack_groups(trained, level):
            plans = [self.planner.plan(level, kind) for kind in group]
            write = {k for k in pending if k in group}
            if write:
                done += self.train(plans, write, {}, self.should_stop)
        evaluated = [self.train_run(level, k) for k in pending if k not in trained]
        return [*done, *evaluated]

    def train(
        self,
        plans: Sequence[RunPlan],
        write: Collection[str],
        metrics_keys: dict[str, str],
        should_stop: Callable[[], bool] | None,
    ) -> list[dict[str, Any]]:
        """Trains the plans as one loop (stacked if more than one) and publishes those in
        `write`, in plan order. Plans of one training share their start iteration and schedule."""
        (start_iteration,) = {p.start_iteration for p in plans}
        (level,) = {p.level for p in plans}
        if len({p.training.model_dump_json() for p in plans}) != 1:
            raise ValueError("the runs of one training must share their schedule")
        kinds = tuple(p.kind for p in plans)
        early_bird = self.masks.early_bird(level, kinds, self.device)
        members = [self._member(plan, kinds if plan.kind in write else None) for plan in plans]
        checkpoints = self._checkpoints(plans[0], kinds)
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            # Dropout draws from the global generator (stacks have no dropout: one seed).
            torch.manual_seed(plans[0].dropout_seed)
            results = train_members(
                members,
                self.splits(),
                plans[0].training,
                start_iteration=start_iteration,
                should_stop=should_stop,
                callbacks=[early_bird] if early_bird is not None else [],
                checkpoints=checkpoints,
            )
        if early_bird is not None:
            for result in results:
                result.metrics["mask_drawn_at"] = early_bird.drawn_at
        published = [
            publish_run(
                self.store,
                plan,
                result.metrics,
                member.model.state_dict(),
                snapshot=result.snapshot,
                kept=result.kept,
                metrics_key=metrics_keys.get(plan.kind),
            )
            for plan, member, result in zip(plans, members, results, strict=True)
            if plan.kind in write
        ]
        checkpoints.delete()
        return published

    def _checkpoints(self, plan: RunPlan, kinds: tuple[str, ...]) -> CheckpointSlot:
        """Where this training checkpoints (lth_core.train.checkpoint), and what a checkpoint
        must match to be resumed: the schedule and the device type (the loop adds the start,
        the stepper and the callbacks)."""
        return CheckpointSlot(
            self.store,
            plan.level,
            kinds,
            every=plan.training.checkpoint_every,
            seconds=self.checkpoint_seconds,
            identity={
                "training": plan.training.model_dump(mode="json"),
                "device": self.device.type,
            },
        )

    def _member(self, plan: RunPlan, reported_with: tuple[str, ...] | None) -> Member:
        """One run as a member of a training (`reported_with`: the stack's kinds when its
        progress is reported, None when it only trains beside runs that are written)."""
        model = self.build(None)
        model.load_state_dict(plan.start)
        hook = self._progress_hook(plan.level, plan.kind, reported_with) if reported_with else None
        return Member(
            model.to(self.device),
            on_device(plan.mask, self.device),
            plan.data_seed,
            plan.augment_seed,
            hook,
            plan.snapshot_at,
            plan.keep_at,
        )

    def _evaluate_only(self, plan: RunPlan, metrics_key: str | None) -> dict[str, Any]:
        """A run that is evaluated at its start weights under its mask, with no step taken."""
        started = time.perf_counter()
        model = self.build(None)
        model.load_state_dict(plan.start)
        model.to(self.device)
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, m in plan.mask.items():
                params[name].mul_(m.to(device=self.device, dtype=params[name].dtype))
        splits = self.splits()
        chunk = eval_chunk_size(model, int(splits.val_x[0].numel()))
        kept: list[torch.Tensor] = []
        val_loss, val_acc = evaluate(model, splits.val_x, splits.val_y, chunk, kept)
        _, test_acc = evaluate(model, splits.test_x, splits.test_y, chunk)
        point = {
            "iteration": plan.start_iteration,
            "train_loss": math.nan,
            "val_loss": float(val_loss),
            "val_accuracy": float(val_acc),
            "test_accuracy": float(test_acc),
        }
        seconds = time.perf_counter() - started
        metrics = summarize([point], point, seconds=seconds, iterations=plan.start_iteration)
        metrics["val_correct"] = pack_correct(kept[0].cpu().numpy(), plan.start_iteration)
        return publish_run(self.store, plan, metrics, model.state_dict(), metrics_key=metrics_key)

    def _progress_hook(self, level: int, kind: str, kinds: tuple[str, ...]) -> Hook | None:
        if self.progress is None:
            return None
        report, total = self.progress, self.spec.training.iterations

        def hook(iteration: int, record: dict[str, float] | None) -> None:
            report(ProgressEvent(level, kind, iteration, total, record, kinds))

        return hook
