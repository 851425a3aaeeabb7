"""`POST /experiments/{id}/resume`: continue a cancelled or failed experiment.

Instead of a resubmission that starts again at level 0, the experiment is queued again and
the worker continues from its finished levels (and finished runs) on disk.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api.deps import ExperimentIdDep, SessionDep, SettingsDep
from service.api.strict_query import reject_unknown_query
from service.auth import OwnerDep, get_principal
from service.errors import Conflict, TooManyRequests, error_responses
from service.presenters import experiment_out
from service.quotas import check_active_limit
from service.reads import not_found
from service.schemas import ExperimentOut
from store import experiments, queue
from store.resume import resume

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
    # The owner's lock, as submit takes it: concurrent resumes cannot all pass the limit.
    experiments.lock_owner(session, experiment.owner)
    if not resume(session, experiment_id, owner=owner):
        session.rollback()
        raise Conflict(
            f"experiment {experiment_id} is {experiment.status}; only a cancelled or failed "
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
