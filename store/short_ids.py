"""Short ids: any unique start of an experiment id (at least 8 hex digits) names it.

`lth ls` and the web view show 8 digits; people paste them into every command, URL and spec
(`"mask": {"experiment_id": "d668295f"}`). Resolving happens here only, for the API's routes,
the spec's mask reference and the CLI (through the API), so a prefix means the same thing
everywhere: one match is the experiment, none is "not found", several is an error that lists
them (id, name, creation time) so the user can pick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from store.artifacts import InvalidId, normalize_id
from store.models import Experiment

#: The shortest prefix accepted: 8 hex digits (what `lth ls` shows). With 4 billion values a
#: collision among one owner's experiments is rare, and an ambiguous one is reported.
MIN_PREFIX = 8
#: How many candidates an ambiguous prefix lists.
MAX_CANDIDATES = 10

_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},31}}")
_E = Experiment.__table__.c


@dataclass(frozen=True)
class Candidate:
    id: str
    name: str
    created_at: datetime

    def describe(self) -> str:
        return f"{self.id} ({self.name}, created {self.created_at.isoformat(timespec='seconds')})"


class AmbiguousId(ValueError):
    """A prefix that starts more than one of the caller's experiment ids."""

    def __init__(self, prefix: str, candidates: list[Candidate]) -> None:
        shown = "; ".join(c.describe() for c in candidates[:MAX_CANDIDATES])
        more = "" if len(candidates) <= MAX_CANDIDATES else "; and more"
        super().__init__(
            f"{prefix} is the start of several experiment ids: {shown}{more}; give more of it"
        )
        self.prefix = prefix
        self.candidates = candidates


def is_prefix(ref: str) -> bool:
    """Whether ``ref`` is a short id (8 to 31 hex digits, any case), not a whole one."""
    return _PREFIX.fullmatch(ref.lower()) is not None


def resolve(db: Connection | Session, ref: str, *, owner: str | None) -> str | None:
    """The full id ``ref`` names among ``owner``'s experiments (None: everyone's), or None.

    A whole id (32 hex digits or the dashed form) is returned normalized without a query
    (whether it exists is the caller's read); a prefix is looked up. Raises AmbiguousId when a
    prefix starts several ids, InvalidId when ``ref`` is neither an id nor a prefix.
    """
    try:
        return normalize_id(ref)
    except InvalidId:
        if not is_prefix(ref):
            raise
    query = (
        select(_E.id, _E.name, _E.created_at)
        .where(_E.id.like(ref.lower() + "%"))
        .order_by(_E.created_at.desc())
        .limit(MAX_CANDIDATES + 1)
    )
    if owner is not None:
        query = query.where(_E.owner == owner)
    rows = db.execute(query).all()
    if not rows:
        return None
    if len(rows) > 1:
        raise AmbiguousId(ref, [Candidate(r.id, r.name, r.created_at) for r in rows])
    return str(rows[0].id)
