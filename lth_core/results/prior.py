"""What a whole experiment should cost before anything has run, and the note when that is a lot.

The prior on training speed (lth_core.registry.models.throughput) turns iterations into
seconds; this module counts the iterations and runs a spec asks for (every level's runs, a
rewound or fine-tuned run's shorter length, the instability copies) and words the note that
an estimate above a limit gets. One place for both, so the service's submit (and its estimate
route) and a local `lth run` say the same thing. Torch-free.
"""

from __future__ import annotations

from typing import Any

from lth_core.registry.models.throughput import DeviceClass, Prior, about, training_seconds
from lth_core.spec import ExperimentSpec


def spec_prior(spec: ExperimentSpec, device: DeviceClass) -> tuple[dict[str, Any], Prior] | None:
    """The whole experiment's estimate (``runs``, ``iterations``, ``seconds``, ``basis``) on
    ``device`` and the prior itself, or None where the model's size is not known (a plugin's
    model, data of unknown shape)."""
    levels = range(spec.last_level + 1)
    runs = sum(len(spec.runs_at_level(level)) for level in levels)
    iterations = sum(len(spec.runs_at_level(lv)) * run_length(spec, lv) for lv in levels)
    if spec.analysis is not None and spec.analysis.instability is not None:
        iterations += len(levels) * spec.trials * 2 * spec.training.iterations
    found = training_seconds(spec, iterations, runs, device)
    if found is None:
        return None
    estimate = {
        "runs": runs,
        "iterations": iterations,
        "seconds": round(found.seconds, 1),
        "basis": found.basis(spec.model),
    }
    return estimate, found


def run_length(spec: ExperimentSpec, level: int) -> int:
    """Iterations one run of ``level`` trains: a rewound run starts at the rewind point, a
    fine-tuned one trains finetune_iterations (as lth_core.results.eta counts them)."""
    reset = spec.reset
    if level > 0 and reset.finetune_iterations is not None:
        return reset.finetune_iterations
    if level > 0 and reset.mode == "rewind":
        return spec.training.iterations - reset.rewind_iteration
    return spec.training.iterations


def cost_note(
    spec: ExperimentSpec,
    device: DeviceClass,
    limit_seconds: float,
    *,
    remedy: str = "cancel it if that is not what you meant",
) -> str | None:
    """The note for an experiment estimated above ``limit_seconds`` of training on
    ``device``: the estimate, what it counts (runs, iterations, the two numbers a typo
    usually hides in), its basis and the limit; None at or below it, or without a prior.
    ``remedy`` says what to do about it where it is shown."""
    found = spec_prior(spec, device)
    if found is None or found[1].seconds <= limit_seconds:
        return None
    estimate, prior = found
    return (
        f"this experiment is estimated at {about(prior.seconds)} of training "
        f"({estimate['runs']} runs, {estimate['iterations']:,} iterations: "
        f"training.iterations {spec.training.iterations:,}, pruning.levels "
        f"{spec.pruning.levels}; {prior.basis(spec.model)}), above the note limit "
        f"LTH_COST_NOTE_SECONDS={limit_seconds:g}; {remedy}"
    )
