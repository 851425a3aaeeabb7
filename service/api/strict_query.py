"""Unknown query parameters are an error (422 naming them), not silently ignored; so is a
value the database could not store or compare (NUL, a lone surrogate: service.text).

The spec refuses unknown keys so that a typo is reported, not ignored; the same holds for the
query string: ``GET /experiments?stauts=failed`` listing everything would mislead.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator

from service.errors import Unprocessable, detail
from service.text import check_storable


def _declared(route: APIRoute) -> frozenset[str]:
    cached = getattr(route, "_lth_query_names", None)
    if cached is None:
        cached = frozenset(_query_names(route.dependant))
        route._lth_query_names = cached  # type: ignore[attr-defined]
    return cached


def _query_names(dependant: Dependant) -> set[str]:
    """Query parameter names of a route and of every dependency below it."""
    names = {p.alias or p.name for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """A dependency for routers: 422 if the query string names a parameter the route lacks."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    for name, value in request.query_params.multi_items():
        check_storable(name, ["query"])
        check_storable(value, ["query", name[:80]])
    unknown = sorted(set(request.query_params) - _declared(route))
    if unknown:
        allowed = ", ".join(sorted(_declared(route))) or "none"
        raise Unprocessable(
            f"unknown query parameter {unknown[0][:80]!r} (this endpoint takes: {allowed})",
            error_type="unknown_query_parameter",
            details=[
                detail(["query", name[:80]], "Extra inputs are not permitted", "extra_forbidden")
                for name in unknown
            ],
        )


def _integer_digits(value: object) -> object:
    """An integer parameter is written in digits (``2``, ``-1``); ``+0.0`` or ``1e0`` is
    refused (422), not quietly read as a number as pydantic's lax int parsing would."""
    if isinstance(value, str) and not value.removeprefix("-").isdigit():
        raise ValueError("must be an integer, written in digits")
    return value


#: Annotate an ``int`` path or query parameter with this to refuse non-digit spellings.
INTEGER_DIGITS = BeforeValidator(_integer_digits)
