"""The ticket rule: which pruned level is the winning ticket, and why each level is or is not
(torch-free; the engine's results.json and the API decide here, through
lth_core.results.verification).

Every comparison is a verdict with its uncertainty (lth_core.results.verdicts), on validation
numbers only: test accuracy is reported, never chosen on. Units (trials, or verification
repeats) pair by their index: unit r of a level with unit r of the dense level 0 and with the
controls of unit r.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lth_core.registry.controls import CONTROLS, control
from lth_core.results import verdicts as v
from lth_core.results.paired import unit_key
from lth_core.runs import TICKET

TICKET_RULE = (
    "Each pruned level is compared with the dense network (level 0) on validation data, unit "
    "by unit (trials or repeats; with one unit over the shared validation examples): its "
    "accuracy must match the dense network's (non-inferiority at ticket_tolerance), with the "
    "early_stop metric it must stop no later (the paper's condition, no slack), and it must "
    "beat every control a ticket must beat (random_reinit, random_prune; superiority). Each "
    "comparison is yes, no or inconclusive with a 95% interval. A level with no decided 'no' "
    "stays in the unbroken run from level 1 (any number of inconclusive comparisons is "
    "accepted); a decided 'no' ends it. The ticket is the sparsest level of that run: a "
    "winning ticket (verdict yes) when every comparison is yes, otherwise a candidate the "
    "data cannot decide (verdict inconclusive). The dense network is never the ticket: when "
    "level 1 already fails, there is no winning ticket."
)


def _units(summary: Mapping[str, Any], kind: str) -> dict[int, list[Mapping[str, Any]]]:
    """Every run of `kind` at the level, by unit; a summary without `runs` (crafted, or
    recorded before trials existed) stands for one run of each kind in unit 0."""
    runs = summary.get("runs")
    if isinstance(runs, Mapping) and kind in runs:
        repeated = any(int(e.get("repeat", 0)) > 0 for e in runs.get(TICKET, []))
        out: dict[int, list[Mapping[str, Any]]] = {}
        for entry in runs[kind]:
            unit = unit_key(int(entry.get("trial", 0)), int(entry.get("repeat", 0)), repeated)
            out.setdefault(unit, []).append(entry)
        return out
    if kind == TICKET:
        return {0: [summary]}
    found = summary.get("controls", {}).get(kind)
    return {0: [found]} if found is not None else {}


def _accuracy(run: Mapping[str, Any], metric: str) -> float | None:
    """The validation accuracy the rule compares: at early stop, or at the last report
    iteration (the end of training when none are reported)."""
    if metric == "final":
        if run.get("report"):
            last = max(run["report"], key=int)
            return run["report"][last]["val_accuracy"]
        return run.get("final_val_accuracy")
    return run.get("early_stop_val_accuracy")


def _unit_values(units: Mapping[int, list[Mapping[str, Any]]], metric: str) -> dict[int, float]:
    """Per unit the mean accuracy of its runs (a control's draws are averaged in their unit)."""
    out = {}
    for unit, entries in units.items():
        values = [a for a in (_accuracy(e, metric) for e in entries) if a is not None]
        if values:
            out[unit] = sum(values) / len(values)
    return out


def _examples(units: Mapping[int, list[Mapping[str, Any]]]) -> int | None:
    for entries in units.values():
        for entry in entries:
            if entry.get("val_examples"):
                return int(entry["val_examples"])
    return None


def compare_accuracy(
    summary: Mapping[str, Any],
    mine: Mapping[int, list[Mapping[str, Any]]],
    theirs: Mapping[int, list[Mapping[str, Any]]],
    *,
    table_key: str,
    metric: str,
    margin: float | None,
    against: str,
) -> dict[str, Any]:
    """Accuracy of this level's ticket against `theirs`: paired over units when there are two
    or more, else over the validation examples (the summary's `paired` table), else unpaired."""
    a, b = _unit_values(mine, metric), _unit_values(theirs, metric)
    shared = sorted(set(a) & set(b))
    if not shared:
        why = f"no validation accuracy recorded for {against}"
        return v._result(v.INCONCLUSIVE, None, None, None, "none", 0, why)
    if len(shared) >= 2:
        return v.accuracy_units(a, b, margin=margin, against=against)
    unit = shared[0]
    table = summary.get("paired", {}).get("units", {}).get(str(unit), {}).get(table_key)
    if table is not None and metric == "early_stop":
        return v.accuracy_examples(table, margin=margin, against=against)
    n = _examples(mine)
    return v.accuracy_unpaired(a[unit], b[unit], n, margin=margin, against=against)


def _iterations(units: Mapping[int, list[Mapping[str, Any]]]) -> dict[int, tuple[float, bool]]:
    out = {}
    for unit, entries in units.items():
        its = [e.get("early_stop_iteration") for e in entries]
        if its and all(isinstance(i, int | float) for i in its):
            bound = any(bool(e.get("early_stop_lower_bound")) for e in entries)
            out[unit] = (sum(its) / len(its), bound)
    return out


def _must_beat(kind: str) -> bool:
    return kind in CONTROLS and control(kind).ticket_must_beat


def control_kinds(summary: Mapping[str, Any]) -> list[str]:
    kinds = set(summary.get("controls", {})) | set(summary.get("runs") or {})
    return sorted(kinds - {TICKET})


def level_qualifies(
    summary: Mapping[str, Any],
    dense: Mapping[str, Any],
    *,
    tolerance: float,
    metric: str = "early_stop",
    not_proof: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One level's comparisons with the dense network and its controls, its verdict (no if
    any required comparison is no, yes if all are, else inconclusive) and the reasons.
    `not_proof`: controls reported but not required, each with why (e.g. random_reinit on a
    fine-tuning schedule)."""
    mine, ref = _units(summary, TICKET), _units(dense, TICKET)
    comparisons: dict[str, dict[str, Any]] = {
        "matches_dense_accuracy": compare_accuracy(
            summary,
            mine,
            ref,
            table_key="dense",
            metric=metric,
            margin=tolerance,
            against="the dense network",
        )
        | {"required": True}
    }
    if metric == "early_stop":
        comparisons["stops_no_later"] = v.iterations_at_most(
            _iterations(mine), _iterations(ref)
        ) | {"required": True}
    margins: dict[str, Any] = {}
    for kind in control_kinds(summary):
        theirs = _units(summary, kind)
        found = compare_accuracy(
            summary, mine, theirs, table_key=kind, metric=metric, margin=None, against=kind
        )
        required = _must_beat(kind) and kind not in (not_proof or {})
        if kind in (not_proof or {}):
            found = found | {"why": f"{found['why']} ({(not_proof or {})[kind]})"}
        comparisons[f"beats_{kind}"] = found | {"required": required}
        my_it, their_it = _iterations(mine), _iterations(theirs)
        shared = sorted(set(my_it) & set(their_it))
        margins[kind] = {
            "val_accuracy": found["effect"],
            "early_stop_iteration": sum(their_it[u][0] - my_it[u][0] for u in shared) / len(shared)
            if shared
            else None,
            "must_beat": required,
        }
    required = {k: c for k, c in comparisons.items() if c["required"]}
    verdict = v.overall(required)
    reasons = [
        f"{c['verdict']}: {c['why']}" + ("" if c["required"] else " (not required)")
        for c in comparisons.values()
    ]
    return {
        "level": int(summary["level"]),
        "metric": f"val accuracy ({metric})",
        "verdict": verdict,
        "qualifies": verdict != v.NO,
        "comparisons": comparisons,
        "reasons": reasons,
        "margin_vs_dense": comparisons["matches_dense_accuracy"]["effect"],
        "margins": margins,
    }


def _weights(summary: Mapping[str, Any]) -> str:
    w = summary.get("weights_remaining")
    return f" ({100 * w:.1f}% of weights)" if isinstance(w, int | float) else ""


def ticket_decision(
    summaries: Iterable[Mapping[str, Any]],
    tolerance: float,
    metric: str = "early_stop",
    not_proof: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ticket by TICKET_RULE over the levels given: `level` (None: no winning ticket, or
    not decidable yet), `verdict` (yes / inconclusive; None without a ticket), `reason` (one
    sentence), and per level its comparisons and why."""
    by_level = {int(s["level"]): s for s in summaries}
    decision: dict[str, Any] = {
        "level": None,
        "verdict": None,
        "reason": "the dense network (level 0) has not finished",
        "rule": TICKET_RULE,
        "metric": metric,
        "tolerance": tolerance,
        "confidence": v.CONFIDENCE,
        "levels": [],
    }
    if 0 not in by_level:
        return decision
    dense = by_level[0]
    records: list[dict[str, Any]] = [
        {
            "level": 0,
            "verdict": None,
            "qualifies": False,
            "in_unbroken_run": False,
            "reasons": ["the dense network: the reference, never the ticket"],
        }
    ]
    chosen: dict[str, Any] | None = None
    first_failure: dict[str, Any] | None = None
    unbroken = True
    for level in sorted(by_level)[1:]:
        record = level_qualifies(
            by_level[level], dense, tolerance=tolerance, metric=metric, not_proof=not_proof
        )
        unbroken = unbroken and record["verdict"] != v.NO
        record["in_unbroken_run"] = unbroken
        if unbroken:
            chosen = record
        elif record["verdict"] == v.NO and first_failure is None:
            first_failure = record
        elif record["verdict"] != v.NO:
            record["reasons"].append("no decided failure, but after a level with one")
        records.append(record)
    decision["levels"] = records
    if chosen is not None:
        undecided = [
            k for k, c in chosen["comparisons"].items() if c["required"] and c["verdict"] != v.YES
        ]
        where = f"level {chosen['level']}{_weights(by_level[chosen['level']])}"
        decision.update(level=chosen["level"], verdict=chosen["verdict"])
        decision["reason"] = (
            f"{where} is the sparsest level of the unbroken run and a winning ticket: every "
            "comparison is yes"
            if not undecided
            else f"{where} is the sparsest level of the unbroken run, a ticket candidate the "
            f"data cannot decide ({', '.join(undecided)} inconclusive)"
        )
    elif first_failure is not None:
        failed = [
            c["why"]
            for c in first_failure["comparisons"].values()
            if c["required"] and c["verdict"] == v.NO
        ]
        decision["reason"] = f"no winning ticket: level {first_failure['level']} {failed[0]}"
    else:
        decision["reason"] = "no pruned level has finished yet"
    return decision


def choose_ticket(
    summaries: Iterable[Mapping[str, Any]], tolerance: float, metric: str = "early_stop"
) -> int | None:
    """The ticket's level by `ticket_decision`'s rule (None: no winning ticket, or not yet)."""
    return ticket_decision(summaries, tolerance, metric)["level"]
