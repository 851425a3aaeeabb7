"""Who is calling: the ``Authorization: Bearer <key>`` of a request, checked against the keys.

Secure by default. With at least one active key, every experiment endpoint needs a valid one.
With none, the API answers everyone only when it is bound to a loopback address (one person's
laptop); bound anywhere else it answers no one (and ``lth api`` refuses to start). The key
itself never reaches a log line or an error message: errors say only what kind of problem it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from service.api.deps import SettingsDep, open_engine
from service.errors import Unauthorized
from service.security import is_loopback
from store import api_keys, reads
from store.api_keys import OPEN_ACCESS, Principal
from store.db import read_connection
from store.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `lth keys create --owner NAME`, sent as "
    "`Authorization: Bearer <key>`. Not needed by a server on a loopback address that has no keys.",
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_principal(
    request: Request, settings: SettingsDep, credentials: CredentialsDep
) -> Principal:
    """The caller, or a 401 that does not say whether a key exists, was revoked or is mistyped.

    Read over its own read-only connection, given back before the route runs: resolving the
    caller never takes the write lock, whatever the route does next."""
    with read_connection(open_engine(settings)) as connection:
        return principal_on(connection, request, settings, credentials)


def principal_on(
    connection: Connection,
    request: Request,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
) -> Principal:
    """The caller, read over ``connection``; the same rule and the same 401s as every route."""
    return resolve_principal(
        request,
        settings,
        credentials,
        authenticate=lambda presented: api_keys.authenticate_with(
            lambda key_id: reads.key(connection, key_id), presented
        ),
        any_active=lambda: reads.any_active_key(connection),
    )


def resolve_principal(
    request: Request,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
    *,
    authenticate: Callable[[str], Principal | None],
    any_active: Callable[[], bool],
) -> Principal:
    """The one rule (a key if any exists; open only on loopback without keys), over whatever
    reads the keys: an ORM session, or the fast read path's Core connection."""
    presented = credentials.credentials if credentials is not None else None
    if presented is None and "authorization" in request.headers:
        raise Unauthorized("the Authorization header must be `Bearer <key>`", headers=_INVALID)
    if presented is not None:
        principal = authenticate(presented)
        if principal is None:
            raise Unauthorized(
                "the API key is not valid (unknown, revoked or mistyped)", headers=_INVALID
            )
        return principal
    if any_active():
        raise Unauthorized(
            "this API needs a key: send `Authorization: Bearer <key>` (an administrator "
            "creates one with `lth keys create --owner NAME`)",
            headers=_CHALLENGE,
        )
    if not is_loopback(settings.api_host):
        raise Unauthorized(
            f"this server is bound to {settings.api_host}, not a loopback address, and has no "
            "API keys, so it answers no one; an administrator must create a key first "
            "(`lth keys create --owner NAME`)",
            headers=_CHALLENGE,
        )
    return OPEN_ACCESS


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def visible_owner(principal: PrincipalDep) -> str | None:
    """Whose experiments the caller may see: its own, or everyone's (admin, open mode)."""
    return principal.visible_owner


OwnerDep = Annotated[str | None, Depends(visible_owner)]
