"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from service.api.deps import SettingsDep
from service.errors import Unavailable, detail, error_responses
from service.schemas import Health, Readiness
from store import queue
from store.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the broker are reachable",
    responses=error_responses(503),
)
def readyz(settings: SettingsDep) -> Readiness:
    problems = []
    try:
        with get_engine(settings).connect() as connection:
            connection.execute(text("SELECT 1"))
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
    return Readiness(checks={"database": "ok", "broker": "ok"})
