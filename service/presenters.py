"""From database rows to response bodies: the one place that decides what a client sees."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from lth_core.results.cost import experiment_cost
from lth_core.results.verification import decision as ticket_decision
from lth_core.spec import ExperimentSpec, parse_spec
from service.cost_estimate import with_estimate
from service.schemas import (
    Cost,
    ExperimentError,
    ExperimentOut,
    LevelSummary,
    Progress,
    Ticket,
    TicketDecision,
)
from service.timing import timing
from store import experiments
from store.broker import DEFAULT_QUEUE
from store.models import Experiment
from store.scrub import without_server_paths


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


def _parsed(experiment: Experiment) -> ExperimentSpec | None:
    """The stored spec, or None where this version cannot read it (stored by an older one)."""
    try:
        return parse_spec(experiment.spec)
    except ValidationError:
        return None


def _runs_at(spec: ExperimentSpec | None, level: int | None) -> list[str] | None:
    """The run ids of `level` as the engine trains them (lth_core's one definition)."""
    if spec is None or level is None or not 0 <= level <= spec.last_level:
        return None
    return spec.runs_at_level(level)


def progress_of(
    experiment: Experiment, spec: ExperimentSpec | None = None, waiting: str | None = None
) -> Progress:
    raw = experiment.progress if isinstance(experiment.progress, dict) else {}
    pruning = experiment.spec.get("pruning", {}) if isinstance(experiment.spec, dict) else {}
    kind = raw.get("kind")
    kinds = raw.get("kinds")
    level = _int_or_none(raw.get("level"))
    return Progress(
        **timing(experiment, raw),
        kinds=[str(k) for k in kinds] if isinstance(kinds, list) else None,
        runs=_runs_at(spec, level),
        level=level,
        levels=int(pruning.get("levels", 0)) + 1,
        levels_finished=len(experiment.levels),
        kind=kind if isinstance(kind, str) else None,
        iteration=_int_or_none(raw.get("iteration")),
        iterations=_int_or_none(raw.get("iterations")),
        metrics=_metrics(raw.get("metrics")),
        waiting=waiting,
    )


def experiment_out(experiment: Experiment, waiting: str | None = None) -> ExperimentOut:
    """The experiment as a client sees it; ``waiting``: service.consumers.waiting_note."""
    parsed = _parsed(experiment)
    summaries = [
        {**lv.summary, "level": lv.level}
        for lv in sorted(experiment.levels, key=lambda lv: lv.level)
    ]
    levels = [LevelSummary.model_validate(s) for s in summaries]
    ticket = None
    decision = None
    if levels:
        spec = experiment.spec if isinstance(experiment.spec, dict) else {}
        found = ticket_decision(spec, summaries)
        if any(record["level"] == 0 for record in found["levels"]):
            decision = TicketDecision.model_validate(found)
    summary = experiments.ticket_summary(experiment)
    if summary is not None:
        ticket = Ticket.model_validate(
            {
                **summary,
                "url": f"/experiments/{experiment.id}/ticket",
                "verdict": decision.verdict if decision is not None else None,
            }
        )
    error = None
    if experiment.error_type or experiment.error_message:
        error = ExperimentError(
            type=experiment.error_type or "error",
            message=without_server_paths(experiment.error_message or ""),
        )
    return ExperimentOut(
        cost=Cost.model_validate(_cost(parsed, summaries, experiment.queue)),
        time_to_ticket=_time_to_ticket(experiment),
        verified=None
        if decision is None or decision.verification is None
        else decision.verdict == "yes",
        id=experiment.id,
        name=experiment.name,
        status=experiment.status,
        owner=experiment.owner,
        spec=experiment.spec,
        progress=progress_of(experiment, parsed, waiting),
        levels=levels,
        ticket=ticket,
        ticket_decision=decision,
        error=error,
        cancel_requested=experiment.cancel_requested,
        attempts=experiment.attempts,
        queue=experiment.queue or DEFAULT_QUEUE,
        created_at=experiment.created_at,
        updated_at=experiment.updated_at,
        started_at=experiment.started_at,
        finished_at=experiment.finished_at,
    )


def _cost(
    spec: ExperimentSpec | None, summaries: list[dict[str, Any]], queue: str | None
) -> dict[str, Any]:
    """lth_core.results.cost's sums over the finished levels; the estimate needs the runs of the
    levels still to come, which the stored spec gives (before any level: service.cost_estimate's
    prior)."""
    if spec is None:  # stored by an older version: count what is there, estimate nothing
        return {**experiment_cost(summaries, [], lambda level: []), "remaining_estimate": None}
    cost = experiment_cost(summaries, range(spec.last_level + 1), spec.runs_at_level)
    return with_estimate(cost, spec, queue)


def _time_to_ticket(experiment: Experiment) -> float | None:
    """By the clock: from the experiment's start to when its ticket's level was recorded."""
    if experiment.ticket_level is None or experiment.started_at is None:
        return None
    for lv in experiment.levels:
        if lv.level == experiment.ticket_level and lv.created_at is not None:
            return max(0.0, (lv.created_at - experiment.started_at).total_seconds())
    return None
