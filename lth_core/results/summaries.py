"""Level summaries and the choice of the winning ticket, torch-free (shared with the API).

A level summary keeps, at its top level, the ticket's headline numbers and each control's
under `controls` (means over trials and draws; with one trial exactly that run's numbers, as
before trials existed), and adds `trials`, `stats` (mean, std, min and max of every metric
per run kind), `runs` (every run's own numbers) and what the experiment measured about the
level (`weights`, `mask_distance`, `instability`).

The winning ticket (Frankle & Carbin 2019; "matching" from Frankle et al. 2020) is decided by
`ticket_decision` on validation numbers only; test accuracy is reported, never chosen on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lth_core.registry.controls import CONTROLS, control
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

TICKET_RULE = (
    "sparsest level of the unbroken run of matching levels from the dense network: a level "
    "matches when its validation accuracy (trial mean) is at least the dense network's mean "
    "minus ticket_tolerance minus the dense trials' standard deviation, its early-stop "
    "iteration (trial mean) is at most the dense network's mean plus its standard deviation "
    "(early_stop metric only), and it beats every control a ticket must beat "
    "(random_reinit, random_prune) in validation accuracy"
)


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
    }
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
        "controls": {k: _headline(v) for k, v in grouped.items() if k != TICKET},
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


# ----------------------------------------------------------------- the winning ticket


def _metric_name(metric: str) -> str:
    return "early_stop_val_accuracy" if metric == "early_stop" else "final_val_accuracy"


def _run_value(run: Mapping[str, Any], metric: str) -> Any:
    """The validation accuracy the rule compares: at early stop, or at the last report
    iteration (the end of training when none are reported)."""
    if metric == "final" and run.get("report"):
        last = max(run["report"], key=int)
        return run["report"][last]["val_accuracy"]
    return run.get(_metric_name(metric))


def _runs_of(summary: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """Every run of `kind` at the level; a summary without `runs` (crafted, or recorded before
    trials existed) stands for one run of each kind."""
    runs = summary.get("runs")
    if isinstance(runs, Mapping) and kind in runs:
        return list(runs[kind])
    if kind == TICKET:
        return [summary]
    found = summary.get("controls", {}).get(kind)
    return [found] if found is not None else []


def _must_beat(kind: str) -> bool:
    return kind in CONTROLS and control(kind).ticket_must_beat


def _pts(x: float) -> str:
    return f"{100 * x:+.2f} points"


def level_qualifies(
    summary: Mapping[str, Any],
    dense: Mapping[str, Any],
    *,
    tolerance: float,
    metric: str = "early_stop",
) -> dict[str, Any]:
    """Whether one level matches the dense network (level 0) as a winning ticket, why, and
    its margins against the dense network and against each of its controls.

    All on validation data: accuracy `metric` ("early_stop": at the early-stop iteration, the
    paper's rule, which also requires stopping no later; "final": at the last report
    iteration, for the deep networks). With trials the comparison is of trial means, with
    the dense trials' standard deviation as slack (Frankle et al. 2020's "matching").
    """
    level = int(summary["level"])
    mine = stats(_run_value(r, metric) for r in _runs_of(summary, TICKET))
    ref = stats(_run_value(r, metric) for r in _runs_of(dense, TICKET))
    out: dict[str, Any] = {"level": level, "metric": f"val accuracy ({metric})"}
    reasons: list[str] = []
    if mine["mean"] is None or ref["mean"] is None:
        out.update(qualifies=False, reasons=["no validation accuracy recorded for this level"])
        return out
    bar = ref["mean"] - tolerance - ref["std"]
    accuracy_ok = mine["mean"] >= bar - 1e-12
    out.update(
        val_accuracy=mine,
        dense_val_accuracy=ref,
        bar=bar,
        margin_vs_dense=mine["mean"] - ref["mean"],
    )
    reasons.append(
        f"val accuracy {100 * mine['mean']:.2f}% {'>=' if accuracy_ok else '<'} bar "
        f"{100 * bar:.2f}% (dense {100 * ref['mean']:.2f}% - tolerance - dense std)"
    )
    ok = accuracy_ok
    if metric == "early_stop":
        it = stats(r.get("early_stop_iteration") for r in _runs_of(summary, TICKET))
        ref_it = stats(r.get("early_stop_iteration") for r in _runs_of(dense, TICKET))
        if it["mean"] is None or ref_it["mean"] is None:
            ok = False
            reasons.append("no early-stop iteration recorded")
        else:
            limit = ref_it["mean"] + ref_it["std"]
            fast = it["mean"] <= limit + 1e-9
            ok = ok and fast
            out.update(early_stop_iteration=it, dense_early_stop_iteration=ref_it)
            reasons.append(
                f"early stop at {it['mean']:.0f} {'<=' if fast else '>'} {limit:.0f} "
                "(dense mean + std)"
            )
    margins: dict[str, Any] = {}
    kinds = set(summary.get("controls", {})) | {
        k for k in (summary.get("runs") or {}) if k != TICKET
    }
    my_it = stats(r.get("early_stop_iteration") for r in _runs_of(summary, TICKET))
    for kind in sorted(kinds):
        theirs = stats(_run_value(r, metric) for r in _runs_of(summary, kind))
        their_it = stats(r.get("early_stop_iteration") for r in _runs_of(summary, kind))
        must = _must_beat(kind)
        margin = None if theirs["mean"] is None else mine["mean"] - theirs["mean"]
        margins[kind] = {
            "val_accuracy": margin,
            "early_stop_iteration": None
            if their_it["mean"] is None or my_it["mean"] is None
            else their_it["mean"] - my_it["mean"],
            "must_beat": must,
        }
        if must:
            beats = margin is not None and margin > 0
            ok = ok and beats
            reasons.append(
                f"{'beats' if beats else 'does not beat'} {kind} "
                f"({_pts(margin) if margin is not None else 'no numbers'})"
            )
    out.update(qualifies=ok, reasons=reasons, margins=margins)
    return out


def ticket_decision(
    summaries: Iterable[Mapping[str, Any]],
    tolerance: float,
    metric: str = "early_stop",
) -> dict[str, Any]:
    """Which level is the winning ticket, by which rule, and why each level did or did not
    qualify (`level` None until level 0, the dense reference, is known).

    The ticket is the sparsest level of the unbroken run of matching levels from the dense
    end: a sparser level that matches after one that failed got lucky, and is reported as
    matching but not chosen. Level 0 is the reference and is the answer when level 1 fails.
    """
    by_level = {int(s["level"]): s for s in summaries}
    decision: dict[str, Any] = {
        "level": None,
        "rule": TICKET_RULE,
        "metric": metric,
        "tolerance": tolerance,
        "levels": [],
    }
    if 0 not in by_level:
        return decision
    dense = by_level[0]
    chosen, unbroken = 0, True
    records = [
        {
            "level": 0,
            "qualifies": True,
            "in_unbroken_run": True,
            "reasons": ["the dense network: the reference"],
        }
    ]
    for level in sorted(by_level)[1:]:
        record = level_qualifies(by_level[level], dense, tolerance=tolerance, metric=metric)
        # Consecutive among the levels given (all finished levels; verification asks about
        # level 0 and its verification level only).
        unbroken = unbroken and record["qualifies"]
        record["in_unbroken_run"] = unbroken
        if unbroken:
            chosen = level
        elif record["qualifies"]:
            record["reasons"].append("matches, but after a level that did not: not the ticket")
        records.append(record)
    decision["level"] = chosen
    decision["levels"] = records
    return decision


def choose_ticket(
    summaries: Iterable[Mapping[str, Any]], tolerance: float, metric: str = "early_stop"
) -> int | None:
    """The winning ticket's level by `ticket_decision`'s rule (None until level 0 is known)."""
    return ticket_decision(summaries, tolerance, metric)["level"]
