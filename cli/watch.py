"""The live view of a service experiment that `lth submit --wait` and `lth resume --wait` show.

Kept apart from the HTTP client (which only reports each update) so the same following logic
serves a terminal, with bars, and a log, with a line at each new run and every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress, TaskID

from cli.api_client import follow_experiment
from cli.render import progress_bars, timing_text


def wait_for(
    client: httpx.Client,
    experiment_id: str,
    interval: float,
    console: Console,
    show: bool = True,
    line_seconds: float = 5.0,
) -> dict[str, Any]:
    """Follows the experiment until it finishes, with bars over levels and the current run
    (and the speed and ETA the API reports). Without a terminal, a line at each new run and
    every `line_seconds` instead, so a log shows where it stands."""
    lines = show and not console.is_terminal
    with progress_bars(console, disable=not show or lines) as bars:
        view = _Bars(bars, console, lines, line_seconds)
        return follow_experiment(client, experiment_id, interval, view.draw)


class _Bars:
    """The two bars (levels, the current run's iterations) and, for a log, the last line's
    time and run, so a line is printed only when the run changes or `line_seconds` passed."""

    def __init__(self, bars: Progress, console: Console, lines: bool, line_seconds: float) -> None:
        self.bars = bars
        self.console = console
        self.lines = lines
        self.line_seconds = line_seconds
        self.levels_bar: TaskID = bars.add_task("levels", total=None, info="")
        self.run_bar: TaskID = bars.add_task("iterations", total=None, info="")
        self.last_line = float("-inf")
        self.last_run: tuple[str, Any, Any] | None = None

    def draw(self, status: str, p: Mapping[str, Any]) -> None:
        """Shows one update of the experiment's `status` and `progress`."""
        self.bars.update(self.levels_bar, total=p["levels"], completed=p["levels_finished"])
        info = status
        if p.get("level") is not None:
            info = f"level {p['level']} {p.get('kind') or ''}".rstrip()
            acc = (p.get("metrics") or {}).get("test_accuracy")
            if acc is not None:
                info += f"  test acc {100 * acc:.2f}%"
            times = timing_text(p)
            if times:
                info += f"  {times}"
        self.bars.update(
            self.run_bar, total=p.get("iterations"), completed=p.get("iteration") or 0, info=info
        )
        run = (status, p.get("level"), p.get("kind"))
        now = time.monotonic()
        if self.lines and (run != self.last_run or now - self.last_line >= self.line_seconds):
            at = f" iteration {p['iteration']}/{p['iterations']}" if p.get("iterations") else ""
            self.console.print(
                f"levels {p['levels_finished']}/{p['levels']}  {info}{at}",
                highlight=False,
                soft_wrap=True,
            )
            self.last_line, self.last_run = now, run
