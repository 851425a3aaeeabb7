"""Paper defaults that depend on the training budget, adapted when a spec shortens it.

The paper's settings are for the paper's budgets: ResNet-18 drops its learning rate at
iterations 20,000 and 25,000 of 30,000, VGG-19 at epochs 80 and 120 of 160, every model
evaluates every 100 iterations, and 5,000 training examples are held out for validation.
A spec that asks for 100 iterations, or a 2,000-example synthetic set, and leaves these out
would otherwise be refused for values the user never wrote. Here such a default is adapted
the way the paper defines it (milestones as the same fractions of training; at least the
start and the end evaluated; validation a tenth of a small training set), and `notes` says
what was changed, so the CLI and the API can tell the user; the adapted values are in the
echoed spec like every other default. A value the user wrote is never changed: if it does not
fit, the spec's own validation names it.

Works on the raw spec dicts (before pydantic), torch-free.
"""

from __future__ import annotations

import copy
from typing import Any

from lth_core.registry.datasets import DATASETS
from lth_core.spec.numbers import whole_number
from lth_core.spec.paper_defaults import merge, paper_defaults_of
from lth_core.spec.sections import DatasetSpec, SyntheticSpec, TrainingSpec


def _defaults() -> tuple[int, int, int]:
    """The spec's own defaults ."""

    return (
        TrainingSpec.model_fields["eval_every"].default,
        DatasetSpec.model_fields["validation_size"].default,
        SyntheticSpec.model_fields["train_size"].default,
    )


def _given(data: Any, section: str, key: str) -> bool:
    part = data.get(section) if isinstance(data, dict) else None
    return isinstance(part, dict) and key in part


def _int(value: Any) -> int | None:
    """A count as the spec reads it (``2000.0`` is 2000), so that the defaults adapt alike
    however the budget was written."""
    return whole_number(value)


def _plan(
    merged: dict[str, Any], data: dict[str, Any], paper: dict[str, Any] | None
) -> list[tuple[str, str, Any, str]]:
    """(section, key, new value, note) for each default to adapt."""
    changes: list[tuple[str, str, Any, str]] = []
    default_eval_every, default_validation, default_synthetic_train = _defaults()
    training = merged.get("training") if isinstance(merged.get("training"), dict) else {}
    iterations = _int(training.get("iterations"))
    if iterations is not None and iterations >= 1:
        milestones = training.get("lr_milestones")
        paper_training = (paper or {}).get("training", {})
        paper_iterations = _int(paper_training.get("iterations"))
        if (
            not _given(data, "training", "lr_milestones")
            and isinstance(milestones, list)
            and milestones
            and all(_int(m) is not None for m in milestones)
            and any(m >= iterations for m in milestones)
            and paper_iterations
        ):
            scaled = sorted(
                {round(m * iterations / paper_iterations) for m in milestones} - {0, iterations}
            )
            scaled = [m for m in scaled if 0 < m < iterations]
            changes.append(
                (
                    "training",
                    "lr_milestones",
                    scaled,
                    f"training.lr_milestones: the paper's {milestones} (of {paper_iterations} "
                    f"iterations) scaled to {scaled} for iterations {iterations}, the same "
                    "fractions of training; set training.lr_milestones to choose others",
                )
            )
        if not _given(data, "training", "eval_every") and iterations < default_eval_every:
            changes.append(
                (
                    "training",
                    "eval_every",
                    iterations,
                    f"training.eval_every: the default {default_eval_every} is more than "
                    f"iterations {iterations}; evaluating every {iterations} (start and end) "
                    "instead; set training.eval_every to choose",
                )
            )
    dataset = merged.get("dataset") if isinstance(merged.get("dataset"), dict) else {}
    if not _given(data, "dataset", "validation_size"):
        train_size, where = _train_size(dataset, default_synthetic_train)
        if train_size is not None and 2 <= train_size <= default_validation:
            size = max(1, train_size // 10)
            changes.append(
                (
                    "dataset",
                    "validation_size",
                    size,
                    f"dataset.validation_size: the default {default_validation} does not fit "
                    f"in {where} {train_size}; holding out {size} (a tenth) "
                    "instead; set dataset.validation_size to choose",
                )
            )
    return changes


def _train_size(dataset: dict[str, Any], synthetic_default: int) -> tuple[int | None, str]:
    """The training examples a dataset section has before the validation split, and how to
    name them: synthetic's, or what a plugin's facts say (None: unknown here)."""
    name = dataset.get("name")
    if name == "synthetic":
        synthetic = dataset.get("synthetic") if isinstance(dataset.get("synthetic"), dict) else {}
        return _int(synthetic.get("train_size", synthetic_default)), "synthetic.train_size"
    if isinstance(name, str) and name in DATASETS and DATASETS.origin(name) is not None:
        return DATASETS[name].train_size, f"{name}'s train_size"
    return None, ""


def adapt(merged: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`merged` (paper defaults under the user's `data`) with budget-dependent defaults that
    do not fit the user's budget adapted (see the module docstring)."""
    changes = _plan(merged, data, _paper(merged))
    if not changes:
        return merged
    out = copy.deepcopy(merged)
    for section, key, value, _note in changes:
        out.setdefault(section, {})[key] = value
    return out


def notes(data: Any) -> list[str]:
    """What `adapt` changes for this user spec, one line each (empty when nothing)."""

    paper = _paper(data)
    if not isinstance(data, dict) or paper is None:
        return []
    return [note for *_, note in _plan(merge(paper, data), data, paper)]


def _paper(data: Any) -> dict[str, Any] | None:

    return paper_defaults_of(data.get("model") if isinstance(data, dict) else None)
