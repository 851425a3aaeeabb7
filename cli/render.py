"""What results look like in a terminal (the per-level table, costs, timings), shared by
`lth run` and the service commands, so both show an experiment alike (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def pct(x: float | None) -> str:
    """A fraction as a percentage cell; ``-`` where the number does not exist (yet)."""
    return "-" if x is None else f"{100 * x:.2f}"


def plural(count: int, word: str) -> str:
    """``1 level``, ``3 levels``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def stop_text(iteration: Any, iterations: int | None) -> tuple[str, bool]:
    """The early-stop iteration, as ``>=N`` when it is the run's last evaluation: validation
    loss was still falling, so the true early-stopping point is at least N."""
    if iterations is not None and isinstance(iteration, int) and iteration >= iterations:
        return f">={iteration}", True
    return str(iteration), False


def _std(summary: Mapping[str, Any], kind: str, field: str) -> float | None:
    """The trials' standard deviation of `field` for run `kind`, where there are trials."""
    if int(summary.get("trials") or 1) < 2:
        return None
    described = (summary.get("stats") or {}).get(kind, {}).get(field) or {}
    std = described.get("std")
    return float(std) if isinstance(std, int | float) else None


def _with_std(summary: Mapping[str, Any], kind: str, field: str, text: str, digits: int) -> str:
    std = _std(summary, kind, field)
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _cell(summary: Mapping[str, Any], kind: str, field: str, value: Any) -> str:
    """A value, with ± the trials' std when the level has trials (mean ± std)."""
    std = _std(summary, kind, field)
    text = pct(value)
    return text if std is None else f"{text} ± {100 * std:.2f}"


def level_table(
    summaries: Sequence[Mapping[str, Any]],
    ticket_level: int | None,
    title: str = "",
    *,
    iterations: int | None = None,
    running: bool = False,
    levels: int | None = None,
    decision: Mapping[str, Any] | None = None,
) -> Table:
    """Weights remaining, early-stop iteration and accuracy per level, controls beside the ticket.

    `iterations`: the runs' budget, to mark an early stop at the last evaluation as a lower
    bound; `running`: the experiment is still training (the ticket is the best *so far*),
    `levels` its number of levels. With trials each cell is mean ± std over them (controls:
    over trials and draws). `decision`: the rule's block (results.json `ticket`, the API's
    `ticket_decision`): each level's verdict and, under the table, the decision in words."""
    verdicts = {int(r["level"]): r.get("verdict") for r in (decision or {}).get("levels", []) or []}
    controls = sorted({c for s in summaries for c in s.get("controls", {})})
    table = Table(title=title or None)
    table.add_column("level", justify="right")
    table.add_column("weights %", justify="right")
    table.add_column("stop it", justify="right")
    table.add_column("val % @stop", justify="right")
    table.add_column("acc % @stop", justify="right")
    table.add_column("final acc %", justify="right")
    for control in controls:
        short = control.removeprefix("random_")
        table.add_column(f"{short} it", justify="right")
        table.add_column(f"{short} acc %", justify="right")
    drawn = any(s.get("mask_drawn_at") is not None for s in summaries)
    if drawn:
        table.add_column("mask drawn", justify="right")
    if decision is not None:
        table.add_column("verdict")
    bounded = False
    for s in summaries:
        mark = " *" if s["level"] == ticket_level else ""
        mark += " v" if s.get("verification") else ""
        stop, last = stop_text(s["early_stop_iteration"], iterations)
        bounded |= last
        row = [
            f"{s['level']}{mark}",
            pct(s["weights_remaining"]),
            _with_std(s, "ticket", "early_stop_iteration", stop, 0),
            _cell(s, "ticket", "early_stop_val_accuracy", s.get("early_stop_val_accuracy")),
            _cell(s, "ticket", "early_stop_test_accuracy", s["early_stop_test_accuracy"]),
            _cell(s, "ticket", "final_test_accuracy", s["final_test_accuracy"]),
        ]
        for control in controls:
            c = s.get("controls", {}).get(control)
            if c:
                stop, last = stop_text(c["early_stop_iteration"], iterations)
                bounded |= last
                row += [
                    _with_std(s, control, "early_stop_iteration", stop, 0),
                    _cell(s, control, "early_stop_test_accuracy", c["early_stop_test_accuracy"]),
                ]
            else:
                row += ["-", "-"]
        if drawn:
            at = s.get("mask_drawn_at")
            row.append("-" if at is None else str(at))
        if decision is not None:
            row.append("dense" if s["level"] == 0 else verdicts.get(s["level"]) or "-")
        table.add_row(*row)
    notes = []
    if running:
        so_far = f"{len(summaries)} of {levels} levels" if levels else f"{len(summaries)} levels"
        notes.append(f"so far ({so_far}; still running)")
    notes += decision_lines(decision, ticket_level, running=running)
    notes += _legend(summaries, bounded)
    if notes:
        table.caption = "\n".join(notes)
    return table


def _legend(summaries: Sequence[Mapping[str, Any]], bounded: bool) -> list[str]:
    """What the table's marks mean: trials, the verification level, lower bounds."""
    notes = []
    trials = max((int(s.get("trials") or 1) for s in summaries), default=1)
    if trials > 1:
        notes.append(f"mean ± std over {trials} trials")
    if any(s.get("verification") for s in summaries):
        notes.append("v verification level (the final mask retrained under the paper's rule)")
    if bounded:
        notes.append(">=N: stopped at the last evaluation, still improving (a lower bound)")
    return notes


def decision_of(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """The decision block: results.json's `ticket`, or the API's `ticket_decision`."""
    if isinstance(result.get("ticket_decision"), Mapping):
        return result["ticket_decision"]
    ticket = result.get("ticket")
    return ticket if isinstance(ticket, Mapping) and "rule" in ticket else {}


def decision_lines(
    decision: Mapping[str, Any] | None, ticket_level: int | None, *, running: bool = False
) -> list[str]:
    """The decision in words: the ticket and its verdict, or "no winning ticket" and why."""
    so_far = " so far" if running else ""
    name = (decision or {}).get("names") or "winning ticket"
    reason = (decision or {}).get("reason")
    if ticket_level is not None:
        verdict = (decision or {}).get("verdict")
        what = {"yes": "", "inconclusive": " (candidate: inconclusive)"}.get(verdict or "", "")
        lines = [f"* {name}{so_far}: level {ticket_level}{what}, chosen on validation"]
    elif decision is not None and len(decision.get("levels") or []) > 1:
        lines = [f"no {name}{so_far}"]
        if reason and str(reason).startswith("no winning ticket: "):
            reason = str(reason).removeprefix("no winning ticket: ")
    else:
        return []
    if reason:
        lines.append(f"  {reason}")
    return lines


def cost_lines(result: Mapping[str, Any]) -> list[str]:
    """What the experiment cost, under the table: `result` is results.json or the API's
    experiment (both carry cost, time_to_ticket and, with verify, verified)."""
    lines = []
    cost = result.get("cost")
    if isinstance(cost, Mapping):
        line = (
            f"cost: {cost.get('iterations', 0):,} iterations, {cost.get('seconds', 0.0):.1f} s "
            f"of training over {plural(int(cost.get('levels', 0)), 'level')}"
        )
        rest = cost.get("remaining_estimate")
        if isinstance(rest, Mapping) and rest.get("runs"):
            line += f"; to go: {remaining_text(rest)}"
        lines.append(line)
    ttt = result.get("time_to_ticket")
    if ttt is not None:
        lines.append(f"time to ticket: {ttt:.1f} s")
    rates = result.get("pruning_rates")
    if isinstance(rates, Mapping):
        lines.append("rates used per level: " + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()))
    if result.get("verified") is not None:
        verdict = decision_of(result).get("verdict")
        lines.append(
            "verified: the final mask is a winning ticket"
            if result["verified"]
            else "verification inconclusive: the final mask, retrained under the paper's "
            "rule, is not distinguishable from what it is compared with"
            if verdict == "inconclusive"
            else "not verified: the final mask, retrained under the paper's rule, is no "
            "winning ticket"
        )
    return lines


def remaining_text(rest: Mapping[str, Any]) -> str:
    """``about 2 min, 8 runs, 16,000 iterations (estimated from ...)``: the API's
    ``remaining_estimate`` in words, its basis said (a measured speed or a prior)."""
    from lth_core.registry.models.throughput import about

    text = (
        f"{about(float(rest.get('seconds') or 0.0))}, {plural(int(rest['runs']), 'run')}, "
        f"{plural(int(rest.get('iterations') or 0), 'iteration')}"
    )
    basis = rest.get("basis")
    return f"{text} ({basis})" if basis else text


def timing_text(progress: Mapping[str, Any]) -> str:
    """``elapsed 1:02  12.5 it/s  level ETA 0:40  ETA 5:10`` from what the API reports."""
    from lth_core.results.eta import clock_text

    parts = []
    if progress.get("elapsed_seconds") is not None:
        parts.append(f"elapsed {clock_text(progress['elapsed_seconds'])}")
    if progress.get("iterations_per_second") is not None:
        parts.append(f"{progress['iterations_per_second']:.1f} it/s")
    if progress.get("level_eta_seconds") is not None:
        parts.append(f"level ETA {clock_text(progress['level_eta_seconds'])}")
    if progress.get("eta_seconds") is not None:
        parts.append(f"ETA {clock_text(progress['eta_seconds'])}")
    return "  ".join(parts)


def progress_bars(console: Console, disable: bool) -> Progress:
    """The bars of `lth run` and of `lth submit --wait` (tasks "levels" and "iterations", with
    an ``info`` field), one definition so a local run and a service one look alike."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )
