"""Admission control: a bounded number of requests in flight per process, the rest shed.

On two cores the API answers on the order of a thousand reads a second; a request beyond what
it can work on would only wait in a queue (the thread pool's, then the connection pool's)
until its client gave up, while making every request behind it slower: the API then did not
degrade, it collapsed. Here a request beyond ``LTH_API_MAX_IN_FLIGHT`` is answered at once,
``503`` with ``Retry-After``, before any work is done for it, so those admitted keep their
latency and clients back off (``lth`` and the web view honour ``Retry-After``).

Counted apart: ``/healthz`` and ``/readyz`` (a load balancer must see a busy process as alive
and ready, not dead), ``/metrics`` (a scrape must see an overloaded API) and the web view's
files, never refused; event streams
(``.../events``), which stay open for a whole experiment, have their own bound
(``LTH_API_MAX_STREAMS``) so that they cannot take the slots of short requests.

**Fairness.** Each caller (its API key; in open mode, its address) may hold at most
``LTH_API_MAX_IN_FLIGHT_PER_KEY`` of the process's requests in flight (half of them by default)
and ``LTH_API_MAX_STREAMS_PER_KEY`` of its event streams (a quarter); beyond that it is
answered ``429`` with ``Retry-After`` while other callers are still admitted (found: 40
slow-body POSTs with one key made another owner's GET a 503; 64 streams of one key refused
every other stream). The caller is identified from the raw header, without a database read
(a digest, so the key itself is not kept); an invalid key is refused later, as always.

This is pure ASGI middleware on the event loop (one thread), so plain counters are exact.
What it sheds and the streams it holds are also counted for ``/metrics`` (service.metrics).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import send_error

if TYPE_CHECKING:
    from service.metrics import ApiMetrics

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/favicon.ico"})


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith("/static/")


def is_stream(path: str) -> bool:
    return path.startswith("/experiments/") and path.endswith("/events")


def caller_of(scope: Scope) -> str:
    """Who sends a request, for fairness: a digest of its Authorization header, else its
    address (open mode)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return "key:" + hashlib.blake2b(value, digest_size=12).hexdigest()
    client = scope.get("client")
    return f"addr:{client[0] if client else '-'}"


class AdmissionMiddleware:
    """Answers 503 + Retry-After beyond ``max_in_flight`` requests (``max_streams`` streams),
    and 429 + Retry-After beyond one caller's share (``per_key_in_flight``,
    ``per_key_streams``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_streams: int,
        retry_after: int,
        per_key_in_flight: int | None = None,
        per_key_streams: int | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.max_streams = max_streams
        self.retry_after = retry_after
        self.per_key_in_flight = per_key_in_flight or max_in_flight
        self.per_key_streams = per_key_streams or max_streams
        self.in_flight = 0
        self.streams = 0
        self.by_caller: Counter[str] = Counter()
        self.streams_by_caller: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        if is_stream(scope["path"]):
            if self.streams >= self.max_streams:
                await self._refuse(
                    send,
                    f"the API has {self.streams} event streams open, its limit "
                    "(LTH_API_MAX_STREAMS); retry later, or poll with If-None-Match",
                )
                return
            if self.streams_by_caller[caller] >= self.per_key_streams:
                await self._refuse(
                    send,
                    f"you have {self.streams_by_caller[caller]} event streams open, the most "
                    "one API key may (LTH_API_MAX_STREAMS_PER_KEY); close one, or poll with "
                    "If-None-Match",
                    status=429,
                    error_type="too_many_streams",
                )
                return
            self.streams += 1
            self.streams_by_caller[caller] += 1
            if self.metrics is not None:
                self.metrics.streams.inc()
            try:
                await self.app(scope, receive, send)
            finally:
                self.streams -= 1
                self._release(self.streams_by_caller, caller)
                if self.metrics is not None:
                    self.metrics.streams.dec()
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(
                send,
                f"the API is at capacity ({self.in_flight} requests in flight, "
                "LTH_API_MAX_IN_FLIGHT); retry after the Retry-After seconds",
            )
            return
        if self.by_caller[caller] >= self.per_key_in_flight:
            await self._refuse(
                send,
                f"you have {self.by_caller[caller]} requests in flight, the most one API key "
                "may (LTH_API_MAX_IN_FLIGHT_PER_KEY); wait for them, then retry after the "
                "Retry-After seconds",
                status=429,
                error_type="too_many_in_flight",
            )
            return
        self.in_flight += 1
        self.by_caller[caller] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self._release(self.by_caller, caller)

    @staticmethod
    def _release(counts: Counter[str], caller: str) -> None:
        counts[caller] -= 1
        if counts[caller] <= 0:
            del counts[caller]  # the counters hold only callers with something open

    async def _refuse(
        self, send: Send, message: str, *, status: int = 503, error_type: str = "overloaded"
    ) -> None:
        if self.metrics is not None:
            self.metrics.shed.labels(error_type, str(status)).inc()
        await send_error(
            send,
            status,
            error_type,
            message,
            [(b"retry-after", str(self.retry_after).encode())],
        )
