"""The per-owner limits: queued + running experiments (429 with Retry-After above it) and the
bytes of artifacts their experiments hold (422 above it).

One owner filling the queue would starve everyone else for days; the limit keeps a share for
the others, and Retry-After tells a well-behaved client when to try again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.errors import TooManyRequests, Unprocessable, detail
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


def check_storage_quota(
    session: Session, settings: Settings, owner: str | None, adding: int
) -> None:
    """Raises 422 ``storage_quota_exceeded`` if the owner's experiments, with one just added
    in this transaction (``adding`` bytes, already stored with it), would hold more artifact
    bytes than allowed; the caller rolls back on the error."""
    if adding <= 0:
        return
    total, unknown = experiments.stored_bytes(session, owner)
    if unknown:  # stored before estimates were kept: estimate them now
        from lth_core.spec import parse_spec
        from service.spec_size import spec_bytes

        for spec in unknown:
            try:
                total += spec_bytes(parse_spec(spec))
            except ValueError:
                continue
    limit = settings.max_owner_bytes
    if total > limit:
        held = total - adding
        message = (
            f"your experiments hold about {held / 1e9:.2f} GB of artifacts (estimated) and "
            f"this one would add {adding / 1e9:.2f} GB; the limit is {limit / 1e9:.2f} GB "
            "(LTH_MAX_OWNER_BYTES): delete experiments you no longer need, or ask for fewer "
            "levels or trials"
        )
        raise Unprocessable(
            message,
            error_type="storage_quota_exceeded",
            details=[detail(["body"], message, "storage_quota_exceeded")],
        )
