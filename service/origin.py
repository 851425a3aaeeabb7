"""Who may reach the API through a browser: allowed hosts, and no cross-origin writes.

A server on 127.0.0.1 with no keys (open mode) trusts whoever can reach it, and a web page in
the user's own browser can reach it too: by DNS rebinding (``attacker.example`` resolved to
127.0.0.1, sent with ``Host: attacker.example``), or by a "simple" cross-origin request (a form
or ``fetch`` with ``Content-Type: text/plain``, which no CORS preflight stops). So, before any
route runs:

* the ``Host`` header must name this server: a loopback name or address, the address it is
  bound to, or one listed in ``LTH_API_ALLOWED_HOSTS`` (``*``: any). A server bound to every
  address (``0.0.0.0``, ``::``, never open: it needs keys) accepts any host unless that
  setting names them. Otherwise 421 ``host_not_allowed``.
* a write (POST, PUT, PATCH, DELETE) that a browser marks as coming from another origin
  (``Origin`` other than the server's own, ``Origin: null``, ``Sec-Fetch-Site: cross-site``) is
  refused, 403 ``cross_origin``, unless ``LTH_API_ALLOWED_ORIGINS`` lists that origin;
* a write's body must be JSON (``application/json`` or ``*/*+json``): 415
  ``unsupported_media_type`` otherwise, so no form or text/plain request is ever parsed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import send_error
from service.security import is_loopback
from store.settings import Settings

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})


def host_name(authority: str) -> str:
    """The host of a ``Host`` header or URL authority, without port or brackets, lower case."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    if authority.count(":") > 1:  # a bare IPv6 address, no port
        return authority
    return authority.partition(":")[0].rstrip(".")


class HostPolicy:
    """The hosts and origins :class:`OriginMiddleware` lets through, from the settings."""

    def __init__(self, settings: Settings) -> None:
        listed = {host_name(h) for h in settings.api_allowed_hosts.split(",") if h.strip()}
        bound = host_name(settings.api_host)
        self.any_host = "*" in listed or (bound in WILDCARD_ADDRESSES and not listed)
        self.hosts = listed | {bound}
        self.origins = {
            o.strip().rstrip("/").lower() for o in settings.api_allowed_origins.split(",")
        }

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        return self.any_host or is_loopback(name) or name in self.hosts

    def origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


class OriginMiddleware:
    """Pure ASGI middleware applying :class:`HostPolicy` to every HTTP request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.policy = HostPolicy(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, error_type, message = refusal
        await send_error(send, status, error_type, message)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = {name.decode("latin-1"): value for name, value in scope.get("headers", [])}
        host = headers.get("host", b"").decode("latin-1")
        if not self.policy.host_allowed(host):
            return (
                421,
                "host_not_allowed",
                f"this server does not answer to host {host[:100]!r}: use a loopback address "
                "or the address it is bound to, or list the name in LTH_API_ALLOWED_HOSTS",
            )
        if scope.get("method") not in WRITES:
            return None
        origin = headers.get("origin")
        cross = headers.get("sec-fetch-site", b"") == b"cross-site"
        if (origin is not None or cross) and not self.policy.origin_allowed(
            (origin or b"null").decode("latin-1"), host
        ):
            shown = (origin or b"a cross-site page").decode("latin-1")[:100]
            return (
                403,
                "cross_origin",
                f"writes from another origin ({shown}) are refused: use the API from this "
                "server's own pages, a program, or list the origin in LTH_API_ALLOWED_ORIGINS",
            )
        if _has_body(headers) and not _is_json(headers.get("content-type", b"")):
            shown = headers.get("content-type", b"none").decode("latin-1")[:100]
            return (
                415,
                "unsupported_media_type",
                f"the request body must be JSON (Content-Type: application/json), not {shown}",
            )
        return None


def _has_body(headers: dict[str, bytes]) -> bool:
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length", b"0").strip()
    return length not in (b"", b"0")


def _is_json(content_type: bytes) -> bool:
    media = content_type.decode("latin-1").partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
