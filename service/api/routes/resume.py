"""`POST /experiments/{id}/resume`: continue a cancelled or failed experiment.

Instead of a resubmission that starts again at level 0, the experiment is queued again and
the worker continues from its finished levels (and finished runs) on disk.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from service.api.deps import SessionDep, SettingsDep
from service.api.ids import ExperimentIdDep
from service.api.strict_query import reject_unknown_query
from service.auth import OwnerDep, get_principal
from service.errors import Conflict, TooManyRequests, detail, error_responses
from service.presenters import experiment_out
from service.quotas import check_active_limit
from service.reads import not_found
from service.schemas import ExperimentOut
from store import artifacts, experiments, queue
from store.resume import resume
from store.settings import Settings
from store.status import stands

router = APIRouter(
    prefix="/experiments",
    tags=["experiments"],
    dependencies=[Depends(get_principal), Depends(reject_unknown_query)],
)


@router.post(
    "/{experiment_id}/resume",
    response_model=ExperimentOut,
    summary="Resume a cancelled or failed experiment from its finished levels",
    responses=error_responses(401, 404, 409, 429, 503),
)
def resume_experiment(
    experiment_id: ExperimentIdDep, session: SessionDep, settings: SettingsDep, owner: OwnerDep
) -> ExperimentOut:
    """Queues the experiment again; a worker continues at its first unfinished run, keeping
    every finished level. Only a cancelled or failed experiment can be resumed (409 else)."""
    experiment = experiments.get(session, experiment_id, owner=owner)
    if experiment is None:
        raise not_found(experiment_id)
    _check_mask_source(session, settings, experiment.spec)
    # The owner's lock, as submit takes it: concurrent resumes cannot all pass the limit.
    experiments.lock_owner(session, experiment.owner)
    if not resume(session, experiment_id, owner=owner):
        session.rollback()
        raise Conflict(
            f"experiment {experiment_id} {stands(experiment.status)}; only a cancelled or failed "
            "experiment can be resumed",
            error_type="not_resumable",
        )
    try:
        check_active_limit(session, settings, experiment.owner)
    except TooManyRequests:
        session.rollback()
        raise
    session.commit()
    queue.enqueue(experiment_id, settings, experiment.queue)  # the queue it was sent to
    resumed = experiments.get(session, experiment_id, owner=owner)
    assert resumed is not None
    return experiment_out(resumed)


def _check_mask_source(session: Session, settings: Settings, spec: Any) -> None:
    """A resumed experiment reopens its folder, which reads the mask it started from: refuse
    (409) if that source is gone, instead of a failure in the worker (found: one deleted
    before sources were reference-counted failed with FileNotFoundError)."""
    mask = spec.get("mask") if isinstance(spec, dict) else None
    if not isinstance(mask, dict):
        return
    source, level = str(mask.get("experiment_id")), int(mask.get("level", 0))
    row = experiments.get(session, source)
    if row is None or not artifacts.experiment_store(settings, source).exists(
        artifacts.mask_key(level)
    ):
        session.rollback()
        raise Conflict(
            f"this experiment started from the mask of level {level} of experiment {source}, "
            "which has been deleted; it cannot be resumed (submit its spec again with "
            "another mask)",
            error_type="mask_source_missing",
            details=[
                detail(["path", "experiment_id"], "mask source deleted", "mask_source_missing")
            ],
        )
