"""The paper's figures as PNG, SVG or their Vega-Lite description; levels as CSV; comparisons.

Every figure comes from :mod:`lth_core.report.figures`, the one description the web view renders in
the browser and ``lth report`` writes to files. Owner isolation is the API's: an experiment of
someone else is a 404 here as everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from lth_core.report import figures
from lth_core.spec import TAG_PATTERN
from service.api.deps import ReadSessionDep, SettingsDep
from service.api.ids import ExperimentIdDep, resolve_or_404
from service.api.strict_query import reject_unknown_query
from service.auth import OwnerDep, get_principal
from service.errors import Conflict, NotFound, error_responses
from service.figure_sources import sources_for
from service.presenters import experiment_out
from service.schemas import Ticket
from store import experiments
from store.models import Experiment
from store.settings import Settings

router = APIRouter(
    tags=["plots"],
    dependencies=[Depends(get_principal), Depends(reject_unknown_query)],
)

FigureName = Literal[
    "accuracy_curves", "early_stop_iteration", "early_stop_accuracy", "method_comparison"
]
PlotFormat = Literal["png", "svg", "json"]
MEDIA = {"png": "image/png", "svg": "image/svg+xml", "json": "application/json"}
MAX_COMPARED = 50

FigurePath = Annotated[
    FigureName,
    Path(
        description="accuracy_curves (test accuracy during training at chosen levels), "
        "early_stop_iteration or early_stop_accuracy (vs weights remaining, log scale), "
        "method_comparison (accuracy at early stop and early-stop iteration vs weights "
        "remaining, one curve per method: ticket, controls, pruning at initialization)."
    ),
]
FormatPath = Annotated[
    PlotFormat, Path(description="png (2x), svg, or json: the Vega-Lite description.")
]
LevelsQuery = Annotated[
    str | None,
    Query(
        pattern=r"^\d{1,3}(,\d{1,3}){0,19}$",
        description="accuracy_curves only: comma-separated levels to draw (default: the "
        "levels closest to the paper's 100%, 51.3%, 21.1% and 3.6% of weights).",
    ),
]
IdsQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9A-Fa-f-]{8,36}(,[0-9A-Fa-f-]{8,36}){0,49}$",
        description="Comma-separated experiment ids (up to 50), whole or a unique start of "
        "at least 8 hex digits. With tag: these, then the tagged ones (50 in all); with "
        "neither: your latest 50.",
    ),
]
TagQuery = Annotated[
    str | None,
    Query(
        pattern=TAG_PATTERN,
        description="Every experiment with this tag (the latest 50), after any given by ids.",
    ),
]

_IMAGE = {
    200: {
        "description": "The figure.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/svg+xml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def _levels(raw: str | None) -> list[int] | None:
    return [int(x) for x in raw.split(",")] if raw else None


def _figure_response(
    name: str,
    fmt: str,
    experiments_: list[Experiment],
    settings: Settings,
    levels: str | None,
    filename: str,
) -> Response:
    """The figure rendered (png, svg) or described (json: what the web view draws)."""
    sources = sources_for(name, experiments_, settings, _levels(levels))
    title = None if len(experiments_) > 1 else [experiments_[0].name, figures.TITLES[name]]
    spec = figures.figure(name, sources, levels=_levels(levels), title=title)
    if fmt != "json" and not figures.has_points(spec):
        # An image of nothing cannot be drawn (the renderer fails on an empty chart); the JSON
        # description of an empty figure is still served, for the web view.
        raise Conflict(
            f"figure {name}: nothing to draw yet (no finished level"
            + (" among the requested levels" if levels else "")
            + "); ask again once a level has finished, or use the .json description",
            error_type="no_data",
        )
    body = figures.render(spec, fmt)
    headers = {"Cache-Control": "no-cache"}
    if fmt != "json":
        headers["Content-Disposition"] = f'inline; filename="{filename}.{fmt}"'
    return Response(body, media_type=MEDIA[fmt], headers=headers)


def _one(session: Session, experiment_id: str, owner: str | None) -> Experiment:
    experiment = experiments.get(session, experiment_id, owner=owner)
    if experiment is None:
        raise NotFound(f"no experiment with id {experiment_id}")
    return experiment


@router.get(
    "/experiments/{experiment_id}/plots/{figure}.{fmt}",
    response_class=Response,
    summary="One of the paper's figures for an experiment (finished levels so far)",
    responses={**_IMAGE, **error_responses(401, 404, 409, 422, 503)},
)
def experiment_plot(
    experiment_id: ExperimentIdDep,
    figure: FigurePath,
    fmt: FormatPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    levels: LevelsQuery = None,
) -> Response:
    experiment = _one(session, experiment_id, owner)
    return _figure_response(
        figure, fmt, [experiment], settings, levels, f"{experiment.id}-{figure}"
    )


@router.get(
    "/experiments/{experiment_id}/levels.csv",
    response_class=Response,
    summary="The per-level metrics as CSV: one row per level and run kind",
    responses={
        200: {"description": "CSV with a header row.", "content": {"text/csv": {}}},
        **error_responses(401, 404, 503),
    },
)
def levels_csv(
    experiment_id: ExperimentIdDep, session: ReadSessionDep, owner: OwnerDep
) -> Response:
    experiment = _one(session, experiment_id, owner)
    summaries = [{**lv.summary, "level": lv.level} for lv in experiment.levels]
    return Response(
        figures.levels_csv(summaries, experiment.ticket_level),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{experiment.id}-levels.csv"'},
    )


class CompareGroup(BaseModel):
    label: str = Field(description="What sets the group apart, e.g. `learning_rate 0.01`.")
    experiment_ids: list[str]


class CompareMember(BaseModel):
    id: str
    name: str
    status: str
    seed: int | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    ticket: Ticket | None = Field(
        None, description="This member's own ticket (as GET /experiments/{id} gives it)."
    )
    no_ticket: str | None = Field(
        None,
        description="Where ticket is null: why, e.g. `no winning ticket: level 1 ...` (the "
        "ticket decision's reason), or that no pruned level has finished yet.",
    )


def _member(experiment: Experiment) -> CompareMember:
    """One compared experiment with its own ticket: the experiment page's presenter decides it,
    so a member that disagrees with its group (a seed without a ticket) shows here as there."""
    out = experiment_out(experiment)
    no_ticket = None
    if out.ticket is None:
        decision = out.ticket_decision
        if decision is not None and len(decision.levels) > 1:
            reason = decision.reason or ""
            names = decision.names or "winning ticket"
            no_ticket = reason if reason.lower().startswith("no ") else f"no {names}: {reason}"
        else:
            no_ticket = "no pruned level has finished yet"
    spec = experiment.spec if isinstance(experiment.spec, dict) else {}
    return CompareMember(
        id=experiment.id,
        name=experiment.name,
        status=experiment.status,
        seed=spec.get("seed"),
        tags=list(spec.get("tags") or []),
        created_at=experiment.created_at,
        ticket=out.ticket,
        no_ticket=no_ticket,
    )


class CompareOut(BaseModel):
    experiments: list[CompareMember]
    groups: list[CompareGroup] = Field(
        description="Experiments whose specs differ only in the seed (or name, tags) form a "
        "group; figures draw a group as mean ± std."
    )
    differences: list[str] = Field(description="Dotted spec keys whose values differ.")


def _compared(
    session: Session, owner: str | None, ids: str | None, tag: str | None
) -> list[Experiment]:
    """The experiments ``ids`` names (in its order), then those with ``tag`` (oldest first), at
    most MAX_COMPARED; neither given: the caller's latest MAX_COMPARED. Both are optional, as
    openapi.yaml says, so every combination is a comparison rather than a 422."""
    out: dict[str, Experiment] = {}
    for raw in dict.fromkeys(ids.split(",")) if ids is not None else ():
        experiment_id = resolve_or_404(session, raw, owner, ("query", "ids"))
        out.setdefault(experiment_id, _one(session, experiment_id, owner))
    if ids is None or tag is not None:
        rows, _total = experiments.list_experiments(
            session, owner=owner, tag=tag, limit=MAX_COMPARED
        )
        if not rows:
            raise NotFound(
                f"no experiment has tag {tag!r}" if tag is not None else "no experiments yet"
            )
        for row in reversed(rows):  # oldest first: a stable legend order
            if len(out) < MAX_COMPARED:
                out.setdefault(row.id, row)
    return list(out.values())


@router.get(
    "/compare",
    response_model=CompareOut,
    summary="How experiments group for comparison, and which spec fields differ",
    tags=["plots"],
    responses=error_responses(401, 404, 422, 503),
)
def compare(
    session: ReadSessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    ids: IdsQuery = None,
    tag: TagQuery = None,
) -> CompareOut:
    chosen = _compared(session, owner, ids, tag)
    sources = sources_for("early_stop_accuracy", chosen, settings, None)
    by_source = {id(s): e.id for s, e in zip(sources, chosen, strict=True)}
    groups = [
        CompareGroup(label=label, experiment_ids=[by_source[id(s)] for s in members])
        for label, members in figures.group_sources(sources)
    ]
    return CompareOut(
        experiments=[_member(e) for e in chosen],
        groups=groups,
        differences=figures.spec_differences([e.spec for e in chosen]),
    )


@router.get(
    "/compare/plots/{figure}.{fmt}",
    response_class=Response,
    summary="A figure overlaying several experiments (repeats over seeds as mean ± std)",
    responses={**_IMAGE, **error_responses(401, 404, 409, 422, 503)},
)
def compare_plot(
    figure: FigurePath,
    fmt: FormatPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    ids: IdsQuery = None,
    tag: TagQuery = None,
    levels: LevelsQuery = None,
) -> Response:
    chosen = _compared(session, owner, ids, tag)
    return _figure_response(figure, fmt, chosen, settings, levels, f"compare-{figure}")
