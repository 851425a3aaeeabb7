"""Instability analysis (Frankle et al. 2020, "Linear Mode Connectivity and the LTH").

Two copies of a network are trained from the same state at iteration k with different data
orders (the only difference: SGD noise); the error is evaluated at evenly spaced points on
the straight line between the two trained weights. The error barrier is the highest error on
the path minus the mean of the two endpoints' errors. A network is stable (the two copies
land in one linearly connected minimum) when the barrier is within about 2% error; IMP
subnetworks match the dense network only where they are stable, which is why rewinding to
k > 0 finds tickets in deep networks. This is what tells a user which rewinding iteration to
choose, so it is measured on validation data, never test.

Simplification: the copies restart the optimizer at k (Adam's moments, SGD's momentum are
not carried over from the run that reached k); the learning-rate schedule and data order
resume at k as rewinding's do.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lth_core.diagnostics.base import Diagnostic, LevelContext
from lth_core.nn.data.base import Splits
from lth_core.runs import TICKET, run_id
from lth_core.spec.seeds import derive_seed
from lth_core.train.steps.module import eval_chunk_size, evaluate
from lth_core.train.training import Member, train_members

if TYPE_CHECKING:
    from lth_core.imp.run_plan import RunPlan
    from lth_core.spec import ExperimentSpec

StateDict = dict[str, torch.Tensor]


def interpolate(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float
) -> StateDict:
    """(1 - alpha) a + alpha b for floating tensors; integer buffers (batch norm's counters)
    come from `a`. Weights both networks prune are zero in both, so they stay zero."""
    return {
        name: torch.lerp(t, b[name], alpha) if t.is_floating_point() else t.clone()
        for name, t in a.items()
    }


def error_barrier(
    model: nn.Module,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    points: int,
) -> dict[str, Any]:
    """The error (1 - accuracy) at `points` evenly spaced points from `a` to `b`, and the
    barrier: max error on the path minus the mean of the endpoints' errors."""
    alphas = [i / (points - 1) for i in range(points)]
    chunk = eval_chunk_size(model, int(x[0].numel()))
    errors = []
    for alpha in alphas:
        model.load_state_dict(interpolate(a, b, alpha))
        _, accuracy = evaluate(model, x, y, chunk)
        errors.append(1.0 - float(accuracy))
    barrier = max(errors) - (errors[0] + errors[-1]) / 2
    return {"barrier": barrier, "alphas": alphas, "errors": errors}


def _train_from(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    plan: RunPlan,
    splits: Splits,
    device: torch.device,
    *,
    start: int,
    until: int,
    data_seed: int,
) -> StateDict:
    model.load_state_dict(state)
    mask = {n: m.to(device) for n, m in plan.mask.items()}
    cfg = plan.training
    if until != cfg.iterations:
        cfg = cfg.model_copy(
            update={"iterations": until, "eval_every": min(cfg.eval_every, until - start)}
        )
    train_members([Member(model, mask, data_seed)], splits, cfg, start_iteration=start)
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def barrier_of_copies(
    *,
    build: Callable[[], nn.Module],
    plan: RunPlan,
    splits: Splits,
    device: torch.device,
    iteration: int,
    points: int,
    copy_seeds: tuple[int, int],
) -> dict[str, Any]:
    """Trains the plan's run to iteration k (with its own data order; not at all when k is at
    or before its start), then two copies on to the end with the data orders `copy_seeds`,
    and returns their error barrier on validation data."""
    start = plan.start_iteration
    model = build()
    state: Mapping[str, torch.Tensor] = plan.start
    k = max(iteration, start)
    if k > start:
        state = _train_from(
            model, state, plan, splits, device, start=start, until=k, data_seed=plan.data_seed
        )
    end = plan.training.iterations
    a, b = (
        _train_from(model, state, plan, splits, device, start=k, until=end, data_seed=seed)
        for seed in copy_seeds
    )
    result = error_barrier(model, a, b, splits.val_x, splits.val_y, points)
    result["from_iteration"] = k
    return result


class Instability(Diagnostic):
    """The level's error barrier, per trial: two copies of each trial's ticket, trained from
    its network at iteration k with two different data orders, and the validation error on
    the line between them."""

    name = "instability"

    def enabled(self, spec: ExperimentSpec) -> bool:
        return spec.analysis is not None and spec.analysis.instability is not None

    def measure(self, experiment: LevelContext, level: int) -> dict[str, Any]:
        spec = experiment.spec
        assert spec.analysis is not None and spec.analysis.instability is not None
        settings = spec.analysis.instability
        trials = []
        for trial, seed in enumerate(experiment.trial_seeds):
            trials.append(
                barrier_of_copies(
                    build=lambda: experiment.build(None).to(experiment.device),
                    plan=experiment.plan(level, run_id(TICKET, trial)),
                    splits=experiment.splits,
                    device=experiment.device,
                    iteration=settings.iteration,
                    points=settings.points,
                    copy_seeds=(
                        derive_seed(seed, level, "instability", "a"),
                        derive_seed(seed, level, "instability", "b"),
                    ),
                )
            )
        barriers = [t["barrier"] for t in trials]
        return {
            "iteration": settings.iteration,
            "points": settings.points,
            "measured_on": "validation",
            "barrier": sum(barriers) / len(barriers),
            "barrier_std": statistics.stdev(barriers) if len(barriers) > 1 else 0.0,
            "trials": trials,
        }
