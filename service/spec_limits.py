"""The service's own bounds on a spec, tighter than what the engine accepts and configurable.

The engine's spec refuses nonsense; these refuse work that would exhaust a shared service: a
run of millions of iterations, a hundred levels, evaluations that cost more than training, a
synthetic dataset of terabytes, a path on the worker's disk chosen by a remote user. Each
refusal is a 422 of type ``limit_exceeded`` naming the field, the limit and its setting, so a
user knows what to change and an operator knows what to raise.
"""

from __future__ import annotations

import math
from typing import Any

from lth_core.registry.datasets import DATASETS
from lth_core.spec import ExperimentSpec
from service.errors import Unprocessable, detail
from store.settings import Settings


def total_iterations(spec: ExperimentSpec) -> int:
    """Training iterations of every run of every level (level 0 has controls only with a mask),
    over every trial, control draw and verification repeat; classic fine-tuning's pruned
    levels train finetune_iterations, and the instability analysis trains two copies per
    level, trial and rewinding iteration k (from k to the end)."""
    iterations = spec.training.iterations
    pruned = spec.reset.finetune_iterations or iterations
    total = len(spec.runs_at_level(0)) * iterations
    total += sum(len(spec.runs_at_level(lv)) for lv in range(1, spec.last_level + 1)) * pruned
    if spec.analysis is not None and spec.analysis.instability is not None:
        copies = sum(iterations - k for k in spec.analysis.instability.iterations)
        total += (spec.pruning.levels + 1) * spec.trials * 2 * copies
    return total


def eval_ratio(spec: ExperimentSpec) -> float:
    """Examples evaluated per training example: (validation + test) / eval_every / batch_size."""
    dataset = spec.dataset
    # Each evaluation runs over the whole test set (its size: the dataset's registry entry; a
    # plugin's dataset whose facts do not say is bounded by its validation part alone).
    test = dataset.synthetic.test_size if dataset.synthetic else DATASETS[dataset.name].test_size
    evaluated = dataset.validation_size + (test or 0)
    return evaluated / spec.training.eval_every / spec.training.batch_size


def check_spec_limits(spec: ExperimentSpec, settings: Settings) -> None:
    """Raises a 422 ``limit_exceeded`` for the first bound the spec goes past."""
    training, dataset = spec.training, spec.dataset
    _at_most(["pruning", "levels"], spec.pruning.levels, settings.max_levels, "LTH_MAX_LEVELS")
    _at_most(
        ["training", "iterations"],
        training.iterations,
        settings.max_iterations,
        "LTH_MAX_ITERATIONS",
    )
    _at_most(
        ["training", "batch_size"],
        training.batch_size,
        settings.max_batch_size,
        "LTH_MAX_BATCH_SIZE",
    )
    if dataset.train_subset is not None:
        _at_most(
            ["dataset", "train_subset"],
            dataset.train_subset,
            settings.max_train_examples,
            "LTH_MAX_TRAIN_EXAMPLES",
        )
    if dataset.synthetic is not None:
        synthetic = dataset.synthetic
        examples = synthetic.train_size + synthetic.test_size
        loc = ["dataset", "synthetic", "train_size"]
        _at_most(
            loc,
            examples,
            settings.max_train_examples,
            "LTH_MAX_TRAIN_EXAMPLES",
            what="synthetic train_size + test_size",
        )
        values = examples * math.prod(synthetic.input_shape)
        _at_most(
            loc,
            values,
            settings.max_dataset_values,
            "LTH_MAX_DATASET_VALUES",
            what="synthetic examples x values per example",
        )
    if dataset.root is not None and not settings.allow_dataset_root:
        raise _refused(
            ["dataset", "root"],
            "dataset.root names a path on the worker's machine and is not accepted through "
            "the API (the operator can allow it with LTH_ALLOW_DATASET_ROOT=true)",
        )
    total = total_iterations(spec)
    if total > settings.max_total_iterations:
        raise _refused(
            ["training", "iterations"],
            f"the experiment would train {total:,} iterations in all ({training.iterations:,} "
            f"per run, {len(spec.run_kinds)} runs per pruned level over "
            f"{spec.pruning.levels + 1} levels); the limit is {settings.max_total_iterations:,} "
            "(LTH_MAX_TOTAL_ITERATIONS): use fewer iterations, levels, controls or trials",
        )
    ratio = eval_ratio(spec)
    if ratio > settings.max_eval_ratio:
        needed = math.ceil(training.eval_every * ratio / settings.max_eval_ratio - 1e-9)
        raise _refused(
            ["training", "eval_every"],
            f"evaluating every {training.eval_every} iterations would evaluate {ratio:.1f} "
            f"examples per training example; the limit is {settings.max_eval_ratio:g} "
            f"(LTH_MAX_EVAL_RATIO): set eval_every to at least {needed}",
        )


#: The spec's counts the service bounds tighter than the engine, by their setting.
_RAW_BOUNDS = (
    (("training", "iterations"), "max_iterations", "LTH_MAX_ITERATIONS"),
    (("training", "batch_size"), "max_batch_size", "LTH_MAX_BATCH_SIZE"),
    (("pruning", "levels"), "max_levels", "LTH_MAX_LEVELS"),
)


def check_raw_limits(body: dict[str, Any], settings: Settings) -> None:
    """The service's bounds on the counts as written, before the spec is parsed: a value past
    the engine's own bound too (1e8 iterations) gets the same "the limit is N (setting)"
    answer as one past the service's only (1e6), not the engine's larger number."""
    for loc, field, setting in _RAW_BOUNDS:
        value: Any = body
        for key in loc:
            value = value.get(key) if isinstance(value, dict) else None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(value) and value > getattr(settings, field):
            _at_most(list(loc), value, getattr(settings, field), setting)


def _at_most(
    loc: list[str], value: float, limit: int, setting: str, *, what: str | None = None
) -> None:
    if value > limit:
        name = what or ".".join(loc)
        shown = f"{int(value):,}" if float(value).is_integer() else f"{value:g}"
        raise _refused(loc, f"{name} is {shown}; the limit is {limit:,} ({setting})")


def _refused(loc: list[str], message: str) -> Unprocessable:
    return Unprocessable(
        f"spec over a service limit: {message}",
        error_type="limit_exceeded",
        details=[detail(["body", *loc], message, "limit_exceeded")],
    )
