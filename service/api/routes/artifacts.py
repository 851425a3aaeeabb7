"""Downloads and curves of a finished (or finishing) experiment, read from its artifact store.

Artifacts are written whole by the engine, so one that exists can be served as is. One that
is missing is either not written yet (409 while the experiment is active)
or never will be (404 once it has finished), and the message says which.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from lth_core.storage.layout import KEYS
from service.api.deps import ReadSessionDep, SettingsDep
from service.api.ids import ExperimentIdDep
from service.api.strict_query import INTEGER_DIGITS, reject_unknown_query
from service.auth import OwnerDep, get_principal
from service.downloads import download
from service.errors import ApiError, Conflict, NotFound, error_responses
from service.schemas import LevelMetrics, RunMetrics
from store import artifacts, experiments
from store.models import Experiment
from store.settings import Settings

# Every route needs a caller, resolved before the id or body is even looked at.
router = APIRouter(
    prefix="/experiments/{experiment_id}",
    tags=["artifacts"],
    dependencies=[Depends(get_principal), Depends(reject_unknown_query)],
)


# Any integer is a well-formed level; one the experiment does not have is a 404, like any
# other artifact that does not exist (the bound is checked against the spec, not here).
LevelPath = Annotated[int, Path(description="Pruning level (0 is dense)."), INTEGER_DIGITS]

_SAFETENSORS = {
    200: {
        "description": "A safetensors file; `ETag` and `Repr-Digest` carry its sha-256.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    307: {"description": "Object store with LTH_ARTIFACTS_REDIRECT_SECONDS: a presigned URL."},
}


def _experiment(session: Session, experiment_id: str, owner: str | None) -> Experiment:
    experiment = experiments.get(session, experiment_id, owner=owner)
    if experiment is None:
        raise NotFound(f"no experiment with id {experiment_id}")
    return experiment


def _check_level(experiment: Experiment, level: int) -> None:
    last = int(experiment.spec.get("pruning", {}).get("levels", 0))
    if not 0 <= level <= last:
        raise NotFound(
            f"experiment {experiment.id} has levels 0..{last}; there is no level {level}",
            error_type="no_such_level",
        )


def _missing(experiment: Experiment, what: str) -> ApiError:
    if experiment.is_finished:
        return NotFound(
            f"{what} does not exist: experiment {experiment.id} {experiment.status} before "
            "producing it",
            error_type="artifact_missing",
        )
    return Conflict(
        f"{what} is not ready yet: experiment {experiment.id} is {experiment.status}; "
        "try again once the level has finished",
        error_type="artifact_not_ready",
    )


def _send(
    settings: Settings, experiment: Experiment, key: str, filename: str, what: str
) -> Response:
    return download(
        artifacts.experiment_store(settings, experiment.id),
        key,
        filename,
        lambda: _missing(experiment, what),
        what=f"{what} of experiment {experiment.id}",
        redirect_seconds=settings.artifacts_redirect_seconds,
    )


@router.get(
    "/levels/{level}/metrics",
    response_model=LevelMetrics,
    summary="Training curves of a level's ticket run and controls",
    responses=error_responses(401, 404, 409, 422, 503),
)
def level_metrics(
    experiment_id: ExperimentIdDep,
    level: LevelPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
) -> LevelMetrics:
    experiment = _experiment(session, experiment_id, owner)
    _check_level(experiment, level)
    runs: dict[str, RunMetrics] = {}
    for kind, data in artifacts.read_runs(settings, experiment.id, level).items():
        try:
            runs[kind] = RunMetrics.model_validate({**data, "kind": kind})
        except ValidationError:
            continue  # a file this version cannot read is left out, not a 500
    if not runs:
        raise _missing(experiment, f"metrics of level {level}")
    finished = any(lv.level == level for lv in experiment.levels)
    return LevelMetrics(experiment_id=experiment.id, level=level, finished=finished, runs=runs)


@router.get(
    "/levels/{level}/mask",
    response_class=FileResponse,
    summary="A level's mask: one bool tensor per prunable weight, named as in state_dict",
    responses={**_SAFETENSORS, **error_responses(401, 404, 409, 422, 500, 503)},
)
def level_mask(
    experiment_id: ExperimentIdDep,
    level: LevelPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
) -> Response:
    experiment = _experiment(session, experiment_id, owner)
    _check_level(experiment, level)
    return _send(
        settings,
        experiment,
        artifacts.mask_key(level),
        f"{experiment.id}-level{level:03d}-mask.safetensors",
        f"the mask of level {level}",
    )


@router.get(
    "/ticket",
    response_class=FileResponse,
    summary="The winning ticket: masks (mask/<name>) and initial weights (init/<name>)",
    description="The spec and the ticket level's metrics are in the file's metadata, so "
    "`safetensors.torch.load_file` alone is enough to use it. The ticket is always a pruned "
    "level: with none (no pruned level qualifies) the answer is 404 `no_ticket` once the "
    "experiment has finished (409 `no_ticket` while it runs), with the reason. While the "
    "experiment runs the ticket is not final: 409 `ticket_not_final`, unless asked for with "
    "`provisional=true`; the file's metadata then says `provisional: true`.",
    responses={**_SAFETENSORS, **error_responses(401, 404, 409, 422, 500, 503)},
)
def ticket(
    experiment_id: ExperimentIdDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    provisional: Annotated[
        bool,
        Query(description="While the experiment runs: the current candidate, marked provisional."),
    ] = False,
) -> Response:
    experiment = _experiment(session, experiment_id, owner)
    if not experiment.is_finished and not provisional:
        raise Conflict(
            f"the ticket of experiment {experiment.id} is not final: it is "
            f"{experiment.status}; ask with provisional=true for the current candidate",
            error_type="ticket_not_final",
        )
    if experiment.ticket_level is None:
        reason = experiments.ticket_reason(experiment)
        error = NotFound if experiment.is_finished else Conflict
        raise error(
            f"experiment {experiment.id} has no winning ticket: {reason}",
            error_type="no_ticket",
        )
    return _send(
        settings,
        experiment,
        KEYS.ticket,
        f"{experiment.id}-ticket.safetensors",
        "the winning ticket",
    )
