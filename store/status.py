"""An experiment's lifecycle: the one definition of its status values.

The database's CHECK constraint, the API's schemas (and so openapi.yaml), the CLI and the web
view (which reads them from the API) all derive from `Status`. No SQLAlchemy, no FastAPI: the
CLI imports it cheaply.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where an experiment stands; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in Status)
FINISHED_STATUSES: frozenset[str] = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
ACTIVE_STATUSES: frozenset[str] = frozenset({Status.QUEUED, Status.RUNNING})


_STANDS: dict[str, str] = {
    Status.QUEUED: "is queued",
    Status.RUNNING: "is running",
    Status.SUCCEEDED: "has succeeded",
    Status.FAILED: "has failed",
    Status.CANCELLED: "was cancelled",
}


def stands(status: str) -> str:
    """The status as a sentence says it ("experiment 1a2b3c4d has succeeded"), never "is
    succeeded"; an unknown value as "is <value>"."""
    return _STANDS.get(status, f"is {status}")


def check_constraint_sql(column: str = "status") -> str:
    """The SQL condition that keeps `column` to the status values."""
    return f"{column} IN ({', '.join(repr(v) for v in STATUS_VALUES)})"
