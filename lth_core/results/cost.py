"""What finding a ticket cost: per run, per level, per experiment, and what remains (torch-free).

Every run records its wall `seconds` (a stacked run's 1/K share of the stack's time) and under
`cost` the iterations it trained (from its start iteration), the device type and torch's thread
count. A level's cost is the sum over everything it trained — its runs (the verification's
repeats included) and its diagnostics' own training (the instability copies) — also split
by kind (`kinds`); an
experiment's the sum over its levels, with an estimate of what the unfinished levels will cost
(the mean cost per run so far times the runs still to train) and the time until the ticket
finally chosen was finished. The service shows the same sums (service/presenters.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lth_core.runs import kind_of


def run_cost(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's cost record (runs written before costs were recorded: from their metrics)."""
    cost = run.get("cost")
    out = dict(cost) if isinstance(cost, Mapping) else {}
    out.setdefault("iterations", int(run.get("iterations", 0)) - int(run.get("start_iteration", 0)))
    out["seconds"] = float(run.get("seconds", 0.0))
    return out


def level_cost(
    runs: Mapping[str, Mapping[str, Any]],
    analysis: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The sum over everything a level trained, with the device and threads its runs ran on:
    its runs (the verification's repeats among them) and what its diagnostics trained
    (`analysis`: name -> {iterations, seconds, runs}, e.g. the instability copies). `kinds`
    splits the sums by run kind (ticket, each control) and diagnostic."""
    costs = [run_cost(run) for run in runs.values()]
    kinds: dict[str, dict[str, Any]] = {}
    for name, c in zip(runs, costs, strict=True):
        _add(kinds.setdefault(kind_of(name), _zero()), c, 1)
    for name, c in (analysis or {}).items():
        _add(kinds.setdefault(name, _zero()), c, int(c.get("runs", 0)))
    out: dict[str, Any] = {
        "iterations": sum(k["iterations"] for k in kinds.values()),
        "seconds": sum(k["seconds"] for k in kinds.values()),
        "runs": sum(k["runs"] for k in kinds.values()),
    }
    devices = sorted({str(c["device"]) for c in costs if "device" in c})
    threads = sorted({int(c["threads"]) for c in costs if "threads" in c})
    if devices:
        out["devices"] = devices
    if threads:
        out["threads"] = threads
    out["kinds"] = kinds
    return out


def _zero() -> dict[str, Any]:
    return {"iterations": 0, "seconds": 0.0, "runs": 0}


def _add(total: dict[str, Any], cost: Mapping[str, Any], runs: int) -> None:
    total["iterations"] += int(cost.get("iterations", 0))
    total["seconds"] += float(cost.get("seconds", 0.0))
    total["runs"] += runs


def _level_cost(summary: Mapping[str, Any]) -> dict[str, Any]:
    cost = summary.get("cost")
    return dict(cost) if isinstance(cost, Mapping) else {"iterations": 0, "seconds": 0.0, "runs": 0}


def experiment_cost(
    summaries: Iterable[Mapping[str, Any]],
    levels: Iterable[int],
    runs_at_level: Callable[[int], list[str]],
) -> dict[str, Any]:
    """So far (finished levels) and an estimate of the rest: the mean cost per run of the
    finished levels times the runs of the levels not finished yet (None before any level)."""
    done = {int(s["level"]): _level_cost(s) for s in summaries}
    iterations = sum(int(c.get("iterations", 0)) for c in done.values())
    seconds = sum(float(c.get("seconds", 0.0)) for c in done.values())
    runs = sum(int(c.get("runs", 0)) for c in done.values())
    kinds: dict[str, dict[str, Any]] = {}
    for c in done.values():
        for kind, part in (c.get("kinds") or {}).items():
            _add(kinds.setdefault(kind, _zero()), part, int(part.get("runs", 0)))
    remaining_runs = sum(len(runs_at_level(level)) for level in levels if level not in done)
    estimate = None
    if runs:
        estimate = {
            "runs": remaining_runs,
            "iterations": round(iterations / runs * remaining_runs),
            "seconds": seconds / runs * remaining_runs,
        }
    elif remaining_runs == 0:
        estimate = {"runs": 0, "iterations": 0, "seconds": 0.0}
    return {
        "iterations": iterations,
        "seconds": seconds,
        "levels": len(done),
        "kinds": kinds,
        "remaining_estimate": estimate,
    }


def time_to_ticket(
    summaries: Iterable[Mapping[str, Any]], ticket_level: int | None
) -> float | None:
    """Training seconds until the chosen ticket's level was finished, levels run in order (the
    service measures it by the clock instead: service/presenters.py)."""
    if ticket_level is None:
        return None
    return sum(
        float(_level_cost(s).get("seconds", 0.0))
        for s in summaries
        if int(s["level"]) <= ticket_level
    )
