"""The per-owner limit on queued + running experiments (429 with Retry-After above it).

One owner filling the queue would starve everyone else for days; the limit keeps a share for
the others, and Retry-After tells a well-behaved client when to try again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.errors import TooManyRequests
from store import experiments
from store.settings import Settings


def check_active_limit(session: Session, settings: Settings, owner: str | None) -> None:
    """Raises 429 if ``owner`` has more active experiments than allowed, counting one just
    added in this (uncommitted) transaction; the caller rolls back on the error.
    """
    active = experiments.count_active(session, owner)
    limit = settings.max_active_per_owner
    if active > limit:
        raise TooManyRequests(
            f"{active - 1} experiments of yours are already queued or running; the limit is "
            f"{limit} (LTH_MAX_ACTIVE_PER_OWNER). Wait for one to finish or cancel one",
            headers={"Retry-After": str(settings.quota_retry_after_seconds)},
        )
