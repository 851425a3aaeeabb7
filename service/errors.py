"""One JSON shape for every error, and the handlers that produce it.

Clients (and the CLI) can rely on ``{"error": {"type", "message", "details"}}`` whatever went
wrong: a bad spec, an unknown id, an artifact that is not there yet, or a database outage.
``type`` is a stable machine-readable code; ``message`` is for people; ``details`` lists
field-level problems with their location (e.g. ``["body", "training", "learning_rate"]``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Send

from store.scrub import without_server_paths

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Path to the offending value, e.g. body.training.")
    msg: str
    type: str


class ErrorInfo(BaseModel):
    type: str = Field(description="Stable machine-readable code, e.g. not_found, invalid_spec.")
    message: str = Field(description="What went wrong and, where it helps, what to do.")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorInfo


_DESCRIPTIONS = {
    401: "No API key, or one that is not valid (unknown or revoked)",
    404: "Not found (also an experiment that belongs to someone else)",
    409: "Conflict with the experiment's current state",
    413: "Request body over the size limit",
    422: "Invalid input; details name each offending field",
    429: "Over this API key's share: queued and running experiments of its owner, or its "
    "requests or event streams in flight (admission); see Retry-After",
    500: "Internal error (`artifact_corrupt`: a stored file is not the one written)",
    503: "A dependency (database or broker) is unavailable, or the API is at capacity "
    "(`overloaded`, shed by admission); see Retry-After",
}


def error_description(code: int) -> str:
    """What a status code means in this API (openapi.yaml's response descriptions)."""
    return _DESCRIPTIONS.get(code, "Error")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these status codes, all with the error shape."""
    return {
        code: {"model": ErrorResponse, "description": error_description(code)} for code in codes
    }


class ApiError(Exception):
    """An error the API answers deliberately; raised anywhere below a route."""

    status_code = 400
    error_type = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        details: Sequence[ErrorDetail] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or self.error_type
        self.details = list(details)
        self.headers = headers


class NotFound(ApiError):
    status_code = 404
    error_type = "not_found"


class Unauthorized(ApiError):
    status_code = 401
    error_type = "unauthorized"


class TooManyRequests(ApiError):
    status_code = 429
    error_type = "too_many_active"


class Conflict(ApiError):
    status_code = 409
    error_type = "conflict"


class Unprocessable(ApiError):
    status_code = 422
    error_type = "invalid_request"


class Corrupt(ApiError):
    """A stored artifact whose bytes differ from the digest recorded when it was written."""

    status_code = 500
    error_type = "artifact_corrupt"


class Unavailable(ApiError):
    status_code = 503
    error_type = "unavailable"


def detail(loc: Iterable[str | int], msg: str, type_: str) -> ErrorDetail:
    return ErrorDetail(loc=list(loc), msg=msg, type=type_)


def details_from_pydantic(
    errors: Iterable[dict[str, Any]], prefix: Sequence[str | int] = ()
) -> list[ErrorDetail]:
    """Field errors without the offending input echoed back (it may be huge or secret)."""
    return [
        detail([*prefix, *err.get("loc", ())], str(err.get("msg", "")), str(err.get("type", "")))
        for err in errors
    ]


def summarize(details: Sequence[ErrorDetail], what: str) -> str:
    """'<what>: training.learning_rate: must be ... (and 2 more problems, in details)'."""
    if not details:
        return what
    first = details[0]
    path = ".".join(str(p) for p in first.loc if p not in ("body",)) or "body"
    n = len(details) - 1
    more = f" (and {n} more problem{'s' if n > 1 else ''}, in details)" if n else ""
    return f"{what}: {path}: {first.msg}{more}"


def invalid_spec(error: ValidationError) -> Unprocessable:
    """422 for a spec: each problem worded by lth_core.spec.errors, as `lth run` words it."""
    from lth_core.spec.errors import problems

    details = [detail(["body", *p.loc], p.msg, p.type) for p in problems(error)]
    return Unprocessable(
        summarize(details, "invalid experiment spec"), error_type="invalid_spec", details=details
    )


def _body(error_type: str, message: str, details: Sequence[ErrorDetail] = ()) -> dict[str, Any]:
    """The error shape; no absolute server path survives in a message (store.scrub)."""
    shown = [
        d.model_copy(update={"msg": without_server_paths(d.msg)}) if "/" in d.msg else d
        for d in details
    ]
    info = ErrorInfo(type=error_type, message=without_server_paths(message), details=shown)
    return ErrorResponse(error=info).model_dump(mode="json")


async def send_error(
    send: Send,
    status: int,
    error_type: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """The error shape sent straight from ASGI middleware, outside any handler."""
    body = json.dumps(_body(error_type, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_DB_OUTAGES = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path.

    Starlette's own 405 lists only the first route that matched the path, but one path (an
    experiment) has a route per method (GET, DELETE), and ``Allow`` must name them all.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and isinstance(route, BaseRoute):
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Routes every error the app can raise to the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            _body(exc.error_type, exc.message, exc.details),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = details_from_pydantic(exc.errors())
        return JSONResponse(
            _body("invalid_request", summarize(details, "invalid request"), details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(
            _body(kinds.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=headers or None,
        )

    for outage in _DB_OUTAGES:

        @app.exception_handler(outage)
        async def _database_down(_request: Request, exc: Exception) -> JSONResponse:
            log.warning("database unavailable: %s", exc)
            return JSONResponse(
                _body(
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                ),
                status_code=503,
                headers={"Retry-After": "5"},
            )

    @app.exception_handler(sa_exc.TimeoutError)
    async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
        # No connection free within the pool timeout: the process is overloaded, the
        # database is fine (store.settings.Capacity keeps admitted requests from getting here).
        log.warning("connection pool exhausted: %s", exc)
        retry = getattr(request.app.state.settings, "api_retry_after_seconds", 1)
        return JSONResponse(
            _body("overloaded", "the API is at capacity; retry after the Retry-After seconds"),
            status_code=503,
            headers={"Retry-After": str(retry)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            _body("internal_error", "internal error; the server log has the details"),
            status_code=500,
        )
