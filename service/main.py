"""The FastAPI application: ``create_app()`` for tests and servers, ``app`` for uvicorn.

Creating the app touches no database or broker; the engine (and its tables) is created on
first use, so the API starts even while the database is down and answers 503 until it is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from service import access_log
from service.admission import AdmissionMiddleware
from service.api.main import api_router
from service.api.routes import metrics as metrics_route
from service.body_limit import BodyLimitMiddleware
from service.errors import install_error_handlers
from service.metrics import ApiMetrics
from service.openapi import install_openapi, operation_id
from service.origin import OriginMiddleware
from service.web.routes import install_web
from store.db import get_engine
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Lottery Ticket Hypothesis experiments as a service: submit an iterative magnitude pruning "
    "experiment, watch its levels finish, download masks and the winning ticket."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Threads no more than connections (store.settings.Capacity): no request holding a
        # thread ever waits for a connection that a request waiting for a thread holds.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.capacity.threads
        access_log.install()  # after uvicorn configured its loggers
        try:
            get_engine(settings)  # creates missing tables early; not fatal if the DB is down
        except Exception as exc:
            log.warning("database not reachable at start (requests will answer 503): %s", exc)
        yield
        ApiMetrics.process_exits()

    app = FastAPI(
        title="lth",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # FastAPI's /docs and /redoc load their scripts from a CDN, unpinned and without
        # integrity hashes, onto the origin whose web view keeps an API key in
        # sessionStorage: off unless the operator asks (LTH_API_DOCS); openapi.yaml and
        # /openapi.json describe the API either way.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url=None,
    )
    app.state.settings = settings
    metrics = ApiMetrics(settings) if settings.metrics else None
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OriginMiddleware, settings=settings)
    app.add_middleware(  # outermost: a request beyond capacity costs nothing but its answer
        AdmissionMiddleware,
        max_in_flight=settings.capacity.in_flight,
        max_streams=settings.api_max_streams,
        retry_after=settings.api_retry_after_seconds,
        per_key_in_flight=settings.per_key_in_flight,
        per_key_streams=settings.per_key_streams,
        metrics=metrics,
    )
    app.include_router(api_router)
    if metrics is not None:
        metrics.instrument(app)  # outermost: it sees what admission sheds
        app.include_router(metrics_route.router)
    install_web(app)
    install_openapi(app)
    return app


app = create_app()
