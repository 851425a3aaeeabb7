"""Instability analysis as Frankle et al. 2020 ("Linear Mode Connectivity and the LTH") measure it.

For a level (its mask) and a rewinding iteration k: the *dense* run's weights at iteration k
(level 0's ticket keeps them while it trains: Keys.dense_weights), with the level's mask
applied, are trained to the end twice with different data orders (the only difference: SGD
noise); the validation error is evaluated at evenly spaced points (30 in the paper) on the
straight line between the two trained networks. The error barrier is the highest error on
the path minus the mean of the two endpoints' errors. It is reported beside the endpoints' own
spread: a "barrier" no larger than the spread, or whose maximum is at an endpoint, is noise.
A subnetwork is stable at k when its barrier is below a threshold (the paper: about 2%
error); IMP subnetworks match the dense network where they are stable, so the smallest stable
k is the rewinding iteration the analysis suggests. Sweeping k answers "which k to rewind
to". Measured on validation data, never test.

Simplification: the copies restart the optimizer at k (Adam's moments, SGD's momentum are
not carried over from the dense run); the learning-rate schedule and data order resume at k
as rewinding's do, on the dense run's schedule without patience (they train to the end).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lth_core.diagnostics.base import Diagnostic, LevelContext
from lth_core.runs import TICKET, run_id
from lth_core.spec.seeds import derive_seed
from lth_core.storage.files import get_tensors
from lth_core.storage.layout import Keys
from lth_core.train.steps.module import eval_chunk_size, evaluate
from lth_core.train.training import Member, train_members

if TYPE_CHECKING:
    from lth_core.nn.data.base import Splits
    from lth_core.spec import ExperimentSpec, TrainingSpec

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


def barrier_of(errors: Sequence[float]) -> dict[str, Any]:
    """The error barrier of a path's errors (endpoints first and last): the highest error on
    the path minus the mean of the endpoints', beside the endpoints' own spread and where the
    highest error lies (at an endpoint: the path has no barrier, only the ends differ)."""
    ends = (errors[0] + errors[-1]) / 2
    worst = max(range(len(errors)), key=lambda i: (errors[i], -i))
    return {
        "barrier": errors[worst] - ends,
        "endpoint_errors": [errors[0], errors[-1]],
        "endpoint_spread": abs(errors[0] - errors[-1]),
        "max_at": worst / (len(errors) - 1),
        "max_at_endpoint": worst in (0, len(errors) - 1),
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
    barrier (`barrier_of`)."""
    alphas = [i / (points - 1) for i in range(points)]
    chunk = eval_chunk_size(model, int(x[0].numel()))
    errors = []
    for alpha in alphas:
        model.load_state_dict(interpolate(a, b, alpha))
        _, accuracy = evaluate(model, x, y, chunk)
        errors.append(1.0 - float(accuracy))
    return {**barrier_of(errors), "alphas": alphas, "errors": errors}


def copy_start(theta_k: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> StateDict:
    """Where both copies start: the dense run's theta_k with the level's mask applied."""
    return {
        name: t * mask[name].to(t.dtype) if name in mask else t.clone()
        for name, t in theta_k.items()
    }


def copies_schedule(training: TrainingSpec, k: int) -> TrainingSpec:
    """The dense run's schedule from k to the end, without patience, evaluated only at its
    ends (the copies' curves are not kept: only their final weights are)."""
    return training.model_copy(
        update={"patience": None, "eval_every": training.iterations - k, "test_eval": "curve"}
    )


def train_copy(
    model: nn.Module,
    start: StateDict,
    mask: Mapping[str, torch.Tensor],
    splits: Splits,
    cfg: TrainingSpec,
    *,
    k: int,
    data_seed: int,
) -> tuple[StateDict, int]:
    """One copy trained from `start` at iteration k to the end; its weights and iterations."""
    model.load_state_dict(start)
    device = splits.train_x.device
    (result,) = train_members(
        [Member(model, {n: m.to(device) for n, m in mask.items()}, data_seed)],
        splits,
        cfg,
        start_iteration=k,
    )
    weights = {n: t.detach().clone() for n, t in model.state_dict().items()}
    return weights, int(result.metrics["cost"]["iterations"])


def suggest(by_k: Sequence[Mapping[str, Any]], threshold: float) -> int | None:
    """The smallest k whose mean barrier is below `threshold` (None: none is)."""
    for entry in by_k:
        if entry.get("barrier") is not None and entry["barrier"] < threshold:
            return int(entry["iteration"])
    return None


class Instability(Diagnostic):
    """The level's error barrier for each rewinding iteration k, per trial: two copies of the
    dense run's theta_k under the level's mask, trained with different data orders."""

    name = "instability"

    def enabled(self, spec: ExperimentSpec) -> bool:
        return spec.analysis is not None and spec.analysis.instability is not None

    def measure(self, experiment: LevelContext, level: int) -> dict[str, Any]:
        spec = experiment.spec
        assert spec.analysis is not None and spec.analysis.instability is not None
        settings = spec.analysis.instability
        started = time.perf_counter()
        iterations = 0
        by_k = []
        for k in settings.iterations:
            trials = []
            for trial, seed in enumerate(experiment.trial_seeds):
                measured = self._measure_one(experiment, level, trial, seed, k, settings.points)
                iterations += measured.pop("trained_iterations", 0)
                trials.append(measured)
            by_k.append(_over_trials(k, trials))
        seconds = time.perf_counter() - started
        copies = 2 * len(experiment.trial_seeds) * len(settings.iterations)
        return {
            "iterations": list(settings.iterations),
            "points": settings.points,
            "measured_on": "validation",
            "threshold": settings.threshold,
            "by_iteration": by_k,
            "suggested_rewind_iteration": suggest(by_k, settings.threshold),
            "suggestion_rule": "the smallest k whose mean error barrier is below the threshold",
            "cost": {"iterations": iterations, "seconds": seconds, "runs": copies},
        }

    def _measure_one(
        self, experiment: LevelContext, level: int, trial: int, seed: int, k: int, points: int
    ) -> dict[str, Any]:
        """One trial at one k: both copies trained, their barrier measured."""
        spec = experiment.spec
        key = Keys.of_trial(trial).dense_weights(k)
        if not experiment.store.exists(key):
            return {"trial": trial, "reached": False, "reason": "level 0 stopped before k"}
        mask = experiment.plan(level, run_id(TICKET, trial)).mask
        start = copy_start(get_tensors(experiment.store, key), mask)
        cfg = copies_schedule(spec.training, k)
        model = experiment.build(None).to(experiment.device)
        splits = experiment.splits
        a, ia = train_copy(
            model, start, mask, splits, cfg, k=k, data_seed=_seed(seed, level, k, "a")
        )
        b, ib = train_copy(
            model, start, mask, splits, cfg, k=k, data_seed=_seed(seed, level, k, "b")
        )
        measured = error_barrier(model, a, b, splits.val_x, splits.val_y, points)
        return {"trial": trial, "reached": True, **measured, "trained_iterations": ia + ib}


def _seed(seed: int, level: int, k: int, copy: str) -> int:
    return derive_seed(seed, level, "instability", k, copy)


def _over_trials(k: int, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One k's result: the mean barrier and endpoint spread over the trials that reached k."""
    reached = [t for t in trials if t.get("reached")]
    barriers = [t["barrier"] for t in reached]
    spreads = [t["endpoint_spread"] for t in reached]
    return {
        "iteration": k,
        "barrier": statistics.fmean(barriers) if barriers else None,
        "barrier_std": statistics.stdev(barriers) if len(barriers) > 1 else 0.0,
        "endpoint_spread": statistics.fmean(spreads) if spreads else None,
        "max_at_endpoint": [t["max_at_endpoint"] for t in reached],
        "trials": trials,
    }
