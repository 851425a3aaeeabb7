"""Admission control: a bounded number of requests in flight per process, the rest shed.

On two cores the API answers on the order of a thousand reads a second; a request beyond what
it can work on would only wait in a queue (the thread pool's, then the connection pool's)
until its client gave up, while making every request behind it slower: the API then did not
degrade, it collapsed. Here a request beyond ``LTH_API_MAX_IN_FLIGHT`` is answered at once,
``503`` with ``Retry-After``, before any work is done for it, so those admitted keep their
latency and clients back off (``lth`` and the web view honour ``Retry-After``).

Counted apart: ``/healthz`` and ``/readyz`` (a load balancer must see a busy process as alive
and ready, not dead) and the web view's files, never refused; event streams
(``.../events``), which stay open for a whole experiment, have their own bound
(``LTH_API_MAX_STREAMS``) so that they cannot take the slots of short requests.

This is pure ASGI middleware on the event loop (one thread), so plain counters are exact.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import send_error

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/", "/favicon.ico"})


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith("/static/")


def is_stream(path: str) -> bool:
    return path.startswith("/experiments/") and path.endswith("/events")


class AdmissionMiddleware:
    """Answers 503 + Retry-After beyond ``max_in_flight`` requests (``max_streams`` streams)."""

    def __init__(
        self, app: ASGIApp, *, max_in_flight: int, max_streams: int, retry_after: int
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_streams = max_streams
        self.retry_after = retry_after
        self.in_flight = 0
        self.streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if is_stream(scope["path"]):
            if self.streams >= self.max_streams:
                await self._refuse(
                    send,
                    f"the API has {self.streams} event streams open, its limit "
                    "(LTH_API_MAX_STREAMS); retry later, or poll with If-None-Match",
                )
                return
            self.streams += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.streams -= 1
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(
                send,
                f"the API is at capacity ({self.in_flight} requests in flight, "
                "LTH_API_MAX_IN_FLIGHT); retry after the Retry-After seconds",
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send, message: str) -> None:
        await send_error(
            send,
            503,
            "overloaded",
            message,
            [(b"retry-after", str(self.retry_after).encode())],
        )
