"""From database rows to response bodies: the one place that decides what a client sees."""

from __future__ import annotations

import math
from typing import Any

from service.schemas import (
    ExperimentError,
    ExperimentOut,
    LevelSummary,
    Progress,
    Ticket,
)
from service.timing import timing
from store import experiments
from store.broker import DEFAULT_QUEUE
from store.models import Experiment


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metrics(value: Any) -> dict[str, float] | None:
    """The numeric entries of the worker's latest evaluation record (NaN/inf are dropped:
    JSON cannot carry them)."""
    if not isinstance(value, dict):
        return None
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def progress_of(experiment: Experiment) -> Progress:
    raw = experiment.progress if isinstance(experiment.progress, dict) else {}
    pruning = experiment.spec.get("pruning", {}) if isinstance(experiment.spec, dict) else {}
    kind = raw.get("kind")
    kinds = raw.get("kinds")
    return Progress(
        **timing(experiment, raw),
        kinds=[str(k) for k in kinds] if isinstance(kinds, list) else None,
        level=_int_or_none(raw.get("level")),
        levels=int(pruning.get("levels", 0)) + 1,
        levels_finished=len(experiment.levels),
        kind=kind if isinstance(kind, str) else None,
        iteration=_int_or_none(raw.get("iteration")),
        iterations=_int_or_none(raw.get("iterations")),
        metrics=_metrics(raw.get("metrics")),
    )


def experiment_out(experiment: Experiment) -> ExperimentOut:
    levels = [
        LevelSummary.model_validate({**lv.summary, "level": lv.level})
        for lv in sorted(experiment.levels, key=lambda lv: lv.level)
    ]
    ticket = None
    summary = experiments.ticket_summary(experiment)
    if summary is not None:
        ticket = Ticket.model_validate({**summary, "url": f"/experiments/{experiment.id}/ticket"})
    error = None
    if experiment.error_type or experiment.error_message:
        error = ExperimentError(
            type=experiment.error_type or "error", message=experiment.error_message or ""
        )
    return ExperimentOut(
        id=experiment.id,
        name=experiment.name,
        status=experiment.status,
        owner=experiment.owner,
        spec=experiment.spec,
        progress=progress_of(experiment),
        levels=levels,
        ticket=ticket,
        error=error,
        cancel_requested=experiment.cancel_requested,
        attempts=experiment.attempts,
        queue=experiment.queue or DEFAULT_QUEUE,
        created_at=experiment.created_at,
        updated_at=experiment.updated_at,
        started_at=experiment.started_at,
        finished_at=experiment.finished_at,
    )
