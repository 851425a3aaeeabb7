"""Refuses request bodies over ``LTH_MAX_BODY_BYTES`` with 413, before they are held in memory.

A declared ``Content-Length`` over the limit is answered at once, without reading the body. A
body without one (chunked) is counted as it arrives and refused as soon as it passes the
limit, so no client can make the API buffer more than the limit per request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, send_error


class BodyTooLarge(ApiError):
    status_code = 413
    error_type = "body_too_large"


def too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"request body over the limit of {limit:,} bytes (LTH_MAX_BODY_BYTES)",
    )


class BodyLimitMiddleware:
    """Pure ASGI middleware (no buffering of its own) enforcing the body size limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large(self.max_bytes)  # answered by the ApiError handler
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    error = too_large(limit)
    await send_error(send, 413, error.error_type, error.message, [(b"connection", b"close")])
