"""`lth run`'s progress, fed by the engine's ProgressEvents: bars on a terminal, lines in a log.

On a terminal: a bar over levels and one over the current run's iterations, with what is
training (every member of a stacked level), the latest evaluation, the speed and the time
left for the level and the experiment (lth_core.results.eta). Without one (`nohup lth run ... > log`)
a bar would print nothing for minutes, so a line is printed at each run's start and end and
every `line_seconds` in between. The last frame is the final state: all finished levels
counted, and no stale iteration bar when there was nothing left to train.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console

from cli.render import progress_bars
from lth_core.results.eta import SettlingEta, Speed, clock_text, iterations_left


class RunProgress:
    """The engine's progress callback and the bars it moves; a context manager so the bars
    are torn down (and the terminal restored) however the run ends."""

    def __init__(
        self,
        spec: Any,
        console: Console,
        enabled: bool = True,
        *,
        line_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.console = console
        self.levels = spec.pruning.levels + 1
        self.iterations = spec.training.iterations
        self.lines = enabled and not console.is_terminal
        self.line_seconds = line_seconds
        self.clock = clock
        self.speed = Speed(clock)  # the run's own speed, shown as it/s
        self.eta = SettlingEta(clock)  # the ETA, smoothed per kind of run (no jumps)
        self.experiment: Any = None
        self._finished = 0
        self._last_line = float("-inf")
        self._last_run: tuple[int, str] | None = None
        self.progress = progress_bars(console, disable=not enabled or self.lines)
        self.level_task = self.progress.add_task("levels", total=self.levels, info="")
        self.run_task = self.progress.add_task("iterations", total=self.iterations, info="")

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def start(self, experiment: Any) -> None:
        """Counts the levels a resumed run already has; hides the run bar if none is left."""
        self.experiment = experiment
        self._finished = len(experiment.layout.finished_levels())
        self.progress.update(self.level_task, completed=self._finished)
        if not experiment.pending():
            self.progress.update(self.run_task, visible=False)
        if self.lines:
            self._print(f"levels {self._finished}/{self.levels} finished")

    def finish(self, summaries: Sequence[Any]) -> None:
        """The final frame: every finished level counted, the run bar full or gone."""
        self._finished = len(summaries)
        self.progress.update(self.level_task, completed=self._finished)
        task = self.progress.tasks[self.run_task]
        if task.visible:
            self.progress.update(
                self.run_task, completed=task.total or self.iterations, info="done"
            )
        if self.lines:
            self._print(f"levels {self._finished}/{self.levels} finished: done")

    def stop(self) -> None:
        """Clears the bars before an error or interrupt message, so it is not drawn over."""
        self.progress.stop()

    def update(self, event: Any) -> None:
        """Takes an lth_core ProgressEvent (duck-typed so this module needs no torch)."""
        run = (event.level, event.kind)
        label = getattr(event, "label", event.kind)
        if event.kind != (getattr(event, "kinds", ()) or (event.kind,))[0]:
            return  # a stack reports once per evaluation, through its first member
        rate = self.speed.observe(run, event.iteration)
        self.eta.observe(
            run, "+".join(getattr(event, "kinds", ()) or (event.kind,)), event.iteration
        )
        if self.experiment is not None:
            self._finished = len(self.experiment.layout.finished_levels())
        self.progress.update(self.level_task, completed=self._finished)
        info = f"level {event.level} {label}"
        if event.record:
            info += f"  val loss {event.record['val_loss']:.4f}"
            if event.record.get("test_accuracy") is not None:  # None: test_eval early_stop
                info += f"  test acc {100 * event.record['test_accuracy']:.2f}%"
        times = self._times(event, rate)
        self.progress.update(
            self.run_task,
            completed=event.iteration,
            total=event.iterations,
            info=f"{info}  {times}",
            visible=True,
        )
        if self.lines:
            now = self.clock()
            new_run = run != self._last_run
            last = event.iteration >= event.iterations
            if new_run or last or now - self._last_line >= self.line_seconds:
                self._print(
                    f"level {event.level}/{self.levels - 1} {label}  iteration "
                    f"{event.iteration}/{event.iterations}{info.removeprefix(f'level {event.level} {label}')}"
                    f"  {times}"
                )
        self._last_run = run

    def _times(self, event: Any, rate: float | None) -> str:
        if rate is None:
            return "measuring speed..."
        if self.experiment is None:
            return f"{rate:.1f} it/s"
        kinds = getattr(event, "kinds", ()) or (event.kind,)
        est = self.eta.estimate(
            iterations_left(self.experiment, event.level, event.iteration, kinds)
        )
        return (
            f"{rate:.1f} it/s  level ETA {clock_text(est.level_eta_seconds)}"
            f"  ETA {clock_text(est.eta_seconds)}"
        )

    def _print(self, line: str) -> None:
        self._last_line = self.clock()
        self.console.print(line, highlight=False, soft_wrap=True)
