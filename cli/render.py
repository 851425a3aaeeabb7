"""The per-level results table, shared by `lth run` and the service client (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def level_table(
    summaries: Sequence[Mapping[str, Any]], ticket_level: int | None, title: str = ""
) -> Table:
    """Weights remaining, early-stop iteration and accuracy per level, controls beside the ticket."""
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
    for s in summaries:
        mark = " *" if s["level"] == ticket_level else ""
        row = [
            f"{s['level']}{mark}",
            _pct(s["weights_remaining"]),
            str(s["early_stop_iteration"]),
            _pct(s["early_stop_test_accuracy"]),
            _pct(s["final_test_accuracy"]),
        ]
        for control in controls:
            c = s.get("controls", {}).get(control)
            row += (
                [str(c["early_stop_iteration"]), _pct(c["early_stop_test_accuracy"])]
                if c
                else ["-", "-"]
            )
        table.add_row(*row)
    if ticket_level is not None:
        table.caption = f"* winning ticket: level {ticket_level}"
    return table
