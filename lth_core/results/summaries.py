"""Level summaries and the choice of the winning ticket, torch-free (shared with the API).

A level summary keeps, at its top level, the ticket's headline numbers and each control's
under `controls` (means over trials and draws; with one trial exactly that run's numbers, as
before trials existed), and adds `trials`, `stats` (mean, std, min and max of every metric
per run kind), `runs` (every run's own numbers) and what the experiment measured about the
level (`weights`, `mask_distance`, `instability`).

The winning ticket is decided from these summaries by lth_core.results.ticket_rule (each
comparison with its uncertainty, lth_core.results.verdicts); `paired` (written by the engine)
holds, per unit, the tables of per-example validation correctness those comparisons need.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lth_core.runs import TICKET, parse_run_id

# The fields every run and level summary carries (the service exposes exactly these).
METRIC_FIELDS: tuple[str, ...] = (
    "weights_remaining",
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_test_accuracy",
    "final_test_accuracy",
)
# What the ticket rule and the trial statistics also read (validation numbers).
EXTRA_FIELDS: tuple[str, ...] = ("early_stop_val_accuracy", "final_val_accuracy")


def run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one run, without its curve."""
    return {field: run[field] for field in METRIC_FIELDS}


def report_points(run: Mapping[str, Any], iterations: Sequence[int]) -> dict[str, Any]:
    """Validation and test accuracy of a run at each of `iterations` (its curve's points)."""
    by_iteration = {int(p["iteration"]): p for p in run.get("curve", [])}
    out: dict[str, Any] = {}
    for it in iterations:
        point = by_iteration.get(int(it))
        if point is not None:
            out[str(it)] = {
                "val_accuracy": point["val_accuracy"],
                "test_accuracy": point["test_accuracy"],
            }
    return out


def trial_run(
    run_name: str, run: Mapping[str, Any], report_iterations: Sequence[int] = ()
) -> dict[str, Any]:
    """One run's numbers as the level summary lists them (`runs`)."""
    _, trial, repeat = parse_run_id(run_name)
    curve = run.get("curve") or [{}]
    out = {
        "run": run_name,
        "trial": trial,
        "repeat": repeat,
        **run_summary(run),
        "early_stop_val_accuracy": run.get("early_stop_val_accuracy"),
        "final_val_accuracy": curve[-1].get("val_accuracy"),
        # The minimum at the last evaluation: the early stop is only a lower bound (the
        # validation loss was still falling when training ended).
        "early_stop_lower_bound": run.get("early_stop_iteration") is not None
        and curve[-1].get("iteration") == run.get("early_stop_iteration"),
    }
    if run.get("val_correct"):
        out["val_examples"] = run["val_correct"]["examples"]
    if report_iterations:
        out["report"] = report_points(run, report_iterations)
    return out


def _finite(values: Iterable[Any]) -> list[float]:
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


def stats(values: Iterable[Any]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min and max of the finite values."""
    xs = _finite(values)
    if not xs:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": math.fsum(xs) / len(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
    }


def _stat_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    fields = {f: run.get(f) for f in (*METRIC_FIELDS, *EXTRA_FIELDS)}
    for it, point in run.get("report", {}).items():
        fields[f"val_accuracy@{it}"] = point["val_accuracy"]
        fields[f"test_accuracy@{it}"] = point["test_accuracy"]
    return fields


def _headline(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The headline numbers of several runs: one run's own, else their means (iterations
    rounded to whole iterations; the exact means are in `stats`)."""
    if len(runs) == 1:
        return {f: runs[0][f] for f in METRIC_FIELDS}
    out: dict[str, Any] = {}
    for field in METRIC_FIELDS:
        mean = stats(r.get(field) for r in runs)["mean"]
        out[field] = round(mean) if field == "early_stop_iteration" and mean is not None else mean
    return out


def level_summary(
    level: int,
    runs: Mapping[str, Mapping[str, Any]],
    layers: Mapping[str, Mapping[str, int]],
    *,
    report_iterations: Sequence[int] = (),
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The level's summary from its runs (keyed by run id, lth_core.controls.run_id).

    The first keys are what a level always had (the ticket's numbers, `controls`, `layers`
    of trial 0's mask); then the validation numbers, the trials' statistics and each run.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for name, run in runs.items():
        kind, _, _ = parse_run_id(name)
        grouped.setdefault(kind, []).append(trial_run(name, run, report_iterations))
    for entries in grouped.values():
        entries.sort(key=lambda r: (r["trial"], r["repeat"]))
    tickets = grouped[TICKET]
    summary: dict[str, Any] = {
        "level": level,
        **_headline(tickets),
        # Each control's numbers with its validation accuracy (what the verdicts compare).
        "controls": {
            k: {**_headline(v), **{f: stats(r[f] for r in v)["mean"] for f in EXTRA_FIELDS}}
            for k, v in grouped.items()
            if k != TICKET
        },
        "layers": {name: dict(counts) for name, counts in layers.items()},
    }
    for field in EXTRA_FIELDS:
        summary[field] = stats(r[field] for r in tickets)["mean"]
    summary["trials"] = len(tickets)
    summary["stats"] = {}
    for kind, entries in grouped.items():
        rows = [_stat_fields(r) for r in entries]
        summary["stats"][kind] = {field: stats(row.get(field) for row in rows) for field in rows[0]}
    summary["runs"] = grouped
    summary.update(extras or {})
    return summary
