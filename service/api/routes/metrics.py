"""``GET /metrics``: Prometheus's scrape target (see service.metrics for what and why)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format; no API key; off with LTH_METRICS=false)",
    response_class=Response,
    responses={
        200: {
            "description": "Every series in Prometheus's text format 0.0.4",
            "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    """Sync on purpose: the database read runs in the thread pool, not on the event loop."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
