"""A rich progress display over levels and iterations, fed by the engine's ProgressEvents."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RunProgress:
    def __init__(self, spec: Any, console: Console, enabled: bool = True) -> None:
        self.enabled = enabled
        self.levels = spec.pruning.levels + 1
        self.iterations = spec.training.iterations
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.level_task = self.progress.add_task("levels", total=self.levels, info="")
        self.run_task = self.progress.add_task("iterations", total=self.iterations, info="")
        self._last_level = -1

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

    def update(self, event: Any) -> None:
        """Takes an lth_core ProgressEvent (duck-typed so this module needs no torch)."""
        if event.level != self._last_level:
            self.progress.update(self.level_task, completed=event.level)
            self._last_level = event.level
        info = f"level {event.level} {event.kind}"
        if event.record:
            info += f"  val loss {event.record['val_loss']:.4f}"
            if event.record.get("test_accuracy") is not None:  # None: test_eval early_stop
                info += f"  test acc {100 * event.record['test_accuracy']:.2f}%"
        self.progress.update(
            self.run_task, completed=event.iteration, total=event.iterations, info=info
        )
