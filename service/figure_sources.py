"""Experiments as the figures module sees them: level summaries from the database, curves from
the artifact store, every trial's run (only for the levels a figure draws, so a 30-level
experiment's page does not read every curve)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lth_core.report import figures
from store import artifacts
from store.models import Experiment
from store.settings import Settings


def summaries(experiment: Experiment) -> list[dict[str, Any]]:
    """The finished levels' summaries, in order, each with its level number."""
    return [
        {**lv.summary, "level": lv.level} for lv in sorted(experiment.levels, key=lambda x: x.level)
    ]


def source_of(
    experiment: Experiment,
    settings: Settings,
    *,
    curves_for: Iterable[int] = (),
    label: str | None = None,
) -> figures.Source:
    levels = summaries(experiment)
    curves = {}
    for level in sorted(set(curves_for)):
        runs = artifacts.read_runs(settings, experiment.id, level)
        curves[level] = {
            kind: run["curve"] for kind, run in runs.items() if isinstance(run.get("curve"), list)
        }
    return figures.Source(
        label=label or experiment.name,
        spec=experiment.spec if isinstance(experiment.spec, dict) else {},
        levels=levels,
        curves=curves,
        ticket_level=experiment.ticket_level,
    )


def sources_for(
    name: str,
    experiments: Sequence[Experiment],
    settings: Settings,
    levels: Sequence[int] | None,
) -> list[figures.Source]:
    """Sources for figure ``name``: curves are read only for the accuracy-curve figure, at the
    chosen levels (default: those closest to the paper's sparsities)."""
    labels = _labels(experiments)
    out = []
    for experiment, label in zip(experiments, labels, strict=True):
        wanted: Iterable[int] = ()
        if name == "accuracy_curves":
            wanted = levels or figures.curve_levels(summaries(experiment))
        out.append(source_of(experiment, settings, curves_for=wanted, label=label))
    return out


def _labels(experiments: Sequence[Experiment]) -> list[str]:
    """Names, with a short id where two experiments share one."""
    names = [e.name for e in experiments]
    return [
        n if names.count(n) == 1 else f"{n} ({e.id[:6]})"
        for n, e in zip(names, experiments, strict=True)
    ]
