"""The cost estimate an experiment shows before its first level has finished.

lth_core.results.cost estimates the rest from the measured cost per run, which exists only
once a level is done; until then the experiment's ``remaining_estimate`` comes from the prior
in lth_core.registry.models.throughput (the model's size, the spec's iterations, runs and
evaluations, the queue's device class), and says so in ``basis``. A plugin's model, or data
of unknown shape, has no prior: the estimate stays null until a level is measured.
"""

from __future__ import annotations

from typing import Any

from lth_core.registry.models.throughput import CPU, GPU, Prior, about, training_seconds
from lth_core.spec import ExperimentSpec
from store.broker import GPU_QUEUE

MEASURED = "measured: the mean cost per run of the finished levels, times the runs left"


def prior(spec: ExperimentSpec, queue: str | None) -> tuple[dict[str, Any], Prior] | None:
    """The whole experiment's estimate from the prior (``runs``, ``iterations``, ``seconds``,
    ``basis``) and the prior itself, or None where the model's size is not known."""
    levels = range(spec.last_level + 1)
    runs = sum(len(spec.runs_at_level(level)) for level in levels)
    iterations = sum(len(spec.runs_at_level(lv)) * _run_length(spec, lv) for lv in levels)
    if spec.analysis is not None and spec.analysis.instability is not None:
        iterations += len(levels) * spec.trials * 2 * spec.training.iterations
    found = training_seconds(spec, iterations, runs, GPU if queue == GPU_QUEUE else CPU)
    if found is None:
        return None
    estimate = {
        "runs": runs,
        "iterations": iterations,
        "seconds": round(found.seconds, 1),
        "basis": found.basis(spec.model),
    }
    return estimate, found


def _run_length(spec: ExperimentSpec, level: int) -> int:
    """Iterations one run of ``level`` trains: a rewound run starts at the rewind point, a
    fine-tuned one trains finetune_iterations (as lth_core.results.eta counts them)."""
    reset = spec.reset
    if level > 0 and reset.finetune_iterations is not None:
        return reset.finetune_iterations
    if level > 0 and reset.mode == "rewind":
        return spec.training.iterations - reset.rewind_iteration
    return spec.training.iterations


def cost_note(spec: ExperimentSpec, queue: str | None, limit_seconds: float) -> str | None:
    """A note for an experiment estimated above ``limit_seconds`` of training (None below,
    or without a prior)."""
    found = prior(spec, queue)
    if found is None or found[1].seconds <= limit_seconds:
        return None
    estimate, basis = found
    return (
        f"this experiment is estimated at {about(basis.seconds)} of training "
        f"({estimate['runs']} runs, {estimate['iterations']:,} iterations: "
        f"training.iterations {spec.training.iterations:,}, pruning.levels "
        f"{spec.pruning.levels}; {basis.basis(spec.model)}); cancel it if that is not what "
        "you meant"
    )


def with_estimate(cost: dict[str, Any], spec: ExperimentSpec, queue: str | None) -> dict[str, Any]:
    """``cost`` (lth_core.results.cost's) with its estimate labelled, or from the prior when
    nothing has been measured yet."""
    measured = cost.get("remaining_estimate")
    if measured is not None:
        return {**cost, "remaining_estimate": {**measured, "basis": MEASURED}}
    if cost.get("levels"):
        return cost
    found = prior(spec, queue)
    return cost if found is None else {**cost, "remaining_estimate": found[0]}
