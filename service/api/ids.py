"""The ``{experiment_id}`` path parameter of every route: a whole id or a unique short one.

A whole id is normalized without touching the database (the hot polling path stays one
query). A short id (8 to 31 hex digits, as `lth ls` and the web view show them) is resolved
among the caller's experiments (store.short_ids) after the caller is authenticated, so a
request without a key is a 401 before any id is looked up and a prefix never reveals another
owner's experiments. No match is a 404; several are a 404 ``ambiguous_id`` listing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import anyio
from fastapi import Depends, Path, Request
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.api.deps import SettingsDep, open_engine
from service.auth import CredentialsDep, principal_on
from service.errors import NotFound, detail
from store import short_ids
from store.artifacts import InvalidId, normalize_id
from store.db import read_connection


async def experiment_id(
    request: Request,
    settings: SettingsDep,
    credentials: CredentialsDep,
    experiment_id: Annotated[
        str,
        Path(
            description="The experiment's id (32 hex digits) or a unique start of it "
            f"(at least {short_ids.MIN_PREFIX} hex digits, as `lth ls` shows)."
        ),
    ],
) -> str:
    """The normalized full id; anything that names no single experiment: 404."""
    try:
        return normalize_id(experiment_id)
    except InvalidId:
        if not short_ids.is_prefix(experiment_id):
            raise NotFound(f"no experiment with id {experiment_id[:80]!r}") from None
    engine = open_engine(settings)

    def job() -> str:
        with read_connection(engine) as connection:
            owner = principal_on(connection, request, settings, credentials).visible_owner
            return resolve_or_404(connection, experiment_id, owner)

    return await anyio.to_thread.run_sync(job)


def resolve_or_404(
    db: Connection | Session,
    ref: str,
    owner: str | None,
    loc: Sequence[str | int] = ("path", "experiment_id"),
    what: str = "",
) -> str:
    """The full id ``ref`` (whole or short) names among ``owner``'s experiments, or a 404
    (``ambiguous_id`` listing the candidates when several match). ``what`` prefixes the
    message with the field that held it (e.g. ``mask.experiment_id: ``)."""
    try:
        full = short_ids.resolve(db, ref, owner=owner)
    except short_ids.AmbiguousId as exc:
        raise NotFound(
            f"{what}{exc}",
            error_type="ambiguous_id",
            details=[detail(list(loc), c.describe(), "ambiguous_id") for c in exc.candidates],
        ) from None
    except InvalidId:
        full = None
    if full is None:
        raise NotFound(f"{what}no experiment with id {ref[:80]!r}")
    return full


ExperimentIdDep = Annotated[str, Depends(experiment_id)]
