"""``GET /`` (the web view's single page) and ``/static/*`` (its script, style and the vendored
Vega libraries).

The page carries no data: its script reads everything from the API with the same API key and
owner isolation as any client, sent as an ``Authorization`` header (kept in the browser's
sessionStorage, never in a URL or a cookie, so there is no cross-site request to forge). The
strict Content-Security-Policy allows only this origin's scripts; Vega compiles its expressions
with ``new Function``, hence ``'unsafe-eval'``, and vega-embed injects its small stylesheet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def index() -> FileResponse:
    """The single page; its script routes by the URL fragment (#/experiments/ID, #/compare)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


def install_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
