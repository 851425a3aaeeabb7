"""Resuming a cancelled or failed experiment: queued again, from the levels it finished.

The artifacts on disk are the engine's resume point (every finished run has its metrics
file, and the engine skips those), so resuming only has to make the row claimable again: a
single conditional UPDATE from cancelled/failed to queued that clears the error, the cancel
flag, the claim and the attempt count (the attempts were spent on the earlier try), and
forgets the unfinished control-run claims (they are registered afresh with the level).
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from store.models import Experiment, RunClaim, Status, utcnow

RESUMABLE: frozenset[str] = frozenset({Status.CANCELLED, Status.FAILED})


def resume(session: Session, experiment_id: str, *, owner: str | None = None) -> bool:
    """Queues a cancelled or failed experiment again; False if it is not one (or unknown)."""
    conditions = [Experiment.id == experiment_id, Experiment.status.in_(RESUMABLE)]
    if owner is not None:
        conditions.append(Experiment.owner == owner)
    result = session.execute(
        update(Experiment)
        .where(*conditions)
        .values(
            status=Status.QUEUED,
            cancel_requested=False,
            error_type=None,
            error_message=None,
            claim_token=None,
            heartbeat_at=None,
            attempts=0,
            finished_at=None,
            progress={},
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        return False
    session.execute(
        delete(RunClaim).where(
            RunClaim.experiment_id == experiment_id, RunClaim.finished_at.is_(None)
        )
    )
    session.expire_all()
    return True
