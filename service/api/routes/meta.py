"""The API's vocabulary from its one definitions, so that clients do not hard-code it.

Status values come from store.status, the run-id grammar from lth_core.runs (both torch-free);
the web view reads them once at start. Public like /healthz: they are the same for every
caller and say nothing about any experiment.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from lth_core.runs import RUN_ID_PATTERN
from service.schemas import Meta
from store.status import ACTIVE_STATUSES, STATUS_VALUES

router = APIRouter(tags=["meta"])

META = Meta(
    statuses=list(STATUS_VALUES),
    active_statuses=[s for s in STATUS_VALUES if s in ACTIVE_STATUSES],
    run_id_pattern=RUN_ID_PATTERN,
)


@router.get(
    "/meta",
    response_model=Meta,
    summary="The status values (which of them are active) and the run-id pattern",
)
def meta(response: Response) -> Meta:
    """Fixed for a given server version, so a cache may keep it for a while."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return META
