"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Connection, select, text

from service.api.deps import SettingsDep
from service.consumers import configured_queues
from service.errors import Unavailable, detail, error_responses
from service.schemas import Health, Readiness
from store import queue, workers
from store.db import get_engine
from store.models import ACTIVE_STATUSES, Experiment
from store.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the broker are reachable; which queues workers consume",
    responses=error_responses(503),
)
def readyz(settings: SettingsDep) -> Readiness:
    problems = []
    queues: dict[str, list[str]] = {}
    waited: list[str] = []
    try:
        with get_engine(settings).connect() as connection:
            connection.execute(text("SELECT 1"))
            queues, waited = _queues(connection, settings)
    except Exception as exc:
        problems.append(detail(["database"], f"{type(exc).__name__}: {exc}"[:500], "unreachable"))
    ok, why = queue.broker_reachable(settings)
    if not ok:
        problems.append(detail(["broker"], why[:500], "unreachable"))
    if problems:
        names = " and ".join(str(p.loc[0]) for p in problems)
        raise Unavailable(
            f"not ready: {names} unreachable", error_type="not_ready", details=problems
        )
    # A queue nobody consumes is not a reason to take the API out of a load balancer (it
    # still takes submissions, kept queued); it is named so that an operator sees it.
    unconsumed = [q for q in waited if not queues.get(q)]
    return Readiness(
        checks={"database": "ok", "broker": "ok"}, queues=queues, unconsumed=unconsumed
    )


def _queues(connection: Connection, settings: Settings) -> tuple[dict[str, list[str]], list[str]]:
    """Every standard, configured, consumed or waited-in queue with its live consumers, and
    the queues active experiments wait in."""
    consumers = workers.consumers(connection, timeout_seconds=settings.heartbeat_timeout_seconds)
    waited = connection.execute(
        select(Experiment.queue)
        .where(Experiment.status.in_(ACTIVE_STATUSES), Experiment.queue.is_not(None))
        .distinct()
    ).scalars()
    waited = sorted(str(q) for q in waited)
    names = [*configured_queues(settings), *consumers, *waited]
    return {q: consumers.get(q, []) for q in dict.fromkeys(names)}, waited
