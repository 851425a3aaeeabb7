"""The API's vocabulary from its one definitions, so that clients do not hard-code it.

Status values come from store.status, the run-id grammar from lth_core.runs (both torch-free);
the web view reads them once at start. Public like /healthz: they are the same for every
caller and say nothing about any experiment. `/registry` (the models, datasets, controls and
strategies a spec may name, plugins included) needs a caller: it names installed packages.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from lth_core.registry.listing import describe
from lth_core.runs import RUN_ID_PATTERN
from service.auth import get_principal
from service.errors import error_responses
from service.schemas import Meta, RegistryOut
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


@router.get(
    "/registry",
    response_model=RegistryOut,
    summary="Every model, dataset, control and pruning strategy, built in or from a plugin",
    dependencies=[Depends(get_principal)],
    responses=error_responses(401, 503),
)
def registry() -> RegistryOut:
    """Read from the installed packages' metadata and the plugins' torch-free facts (no
    plugin's torch code is imported here). A package installed while the server runs is seen
    once it is restarted."""
    return RegistryOut.model_validate(describe())
