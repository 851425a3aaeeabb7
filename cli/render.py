"""The per-level results table, shared by `lth run` and the service client (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def stop_text(iteration: Any, iterations: int | None) -> tuple[str, bool]:
    """The early-stop iteration, as ``>=N`` when it is the run's last evaluation: validation
    loss was still falling, so the true early-stopping point is at least N."""
    if iterations is not None and isinstance(iteration, int) and iteration >= iterations:
        return f">={iteration}", True
    return str(iteration), False


def level_table(
    summaries: Sequence[Mapping[str, Any]],
    ticket_level: int | None,
    title: str = "",
    *,
    iterations: int | None = None,
    running: bool = False,
    levels: int | None = None,
) -> Table:
    """Weights remaining, early-stop iteration and accuracy per level, controls beside the ticket.

    `iterations`: the runs' budget, to mark an early stop at the last evaluation as a lower
    bound; `running`: the experiment is still training (the ticket is the best *so far*),
    `levels` its number of levels."""
    controls = sorted({c for s in summaries for c in s.get("controls", {})})
    table = Table(title=title or None)
    table.add_column("level", justify="right")
    table.add_column("weights %", justify="right")
    table.add_column("stop it", justify="right")
    table.add_column("acc % @stop", justify="right")
    table.add_column("final acc %", justify="right")
    for control in controls:
        short = control.removeprefix("random_")
        table.add_column(f"{short} it", justify="right")
        table.add_column(f"{short} acc %", justify="right")
    bounded = False
    for s in summaries:
        mark = " *" if s["level"] == ticket_level else ""
        stop, last = stop_text(s["early_stop_iteration"], iterations)
        bounded |= last
        row = [
            f"{s['level']}{mark}",
            pct(s["weights_remaining"]),
            stop,
            pct(s["early_stop_test_accuracy"]),
            pct(s["final_test_accuracy"]),
        ]
        for control in controls:
            c = s.get("controls", {}).get(control)
            if c:
                stop, last = stop_text(c["early_stop_iteration"], iterations)
                bounded |= last
                row += [stop, pct(c["early_stop_test_accuracy"])]
            else:
                row += ["-", "-"]
        table.add_row(*row)
    notes = []
    if running:
        so_far = f"{len(summaries)} of {levels} levels" if levels else f"{len(summaries)} levels"
        notes.append(f"so far ({so_far}; still running)")
    if ticket_level is not None:
        notes.append(f"* winning ticket{' so far' if running else ''}: level {ticket_level}")
    if bounded:
        notes.append(">=N: stopped at the last evaluation, still improving (a lower bound)")
    if notes:
        table.caption = "\n".join(notes)
    return table
