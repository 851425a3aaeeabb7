"""``GET /experiments/{id}/events``: an experiment's progress as server-sent events.

A poller asks "anything new?" every second whether or not anything is; a stream is told. The
stream opens with what the client has not seen (everything, on a first connection): the
status, each finished level, the latest progress; then, as the worker records them, each
change. Events (``event:`` name, ``data:`` one JSON object, ``id:`` a cursor):

- ``status``: ``{"status", "cancel_requested", "error"}`` whenever the status changes;
- ``level``: a finished level's summary (the same object as in ``levels`` of the experiment);
- ``progress``: the ``progress`` object of the experiment, when it changes;
- ``end``: ``{"status"}`` once the experiment has finished (or ``"deleted"``); then the stream
  closes. An experiment that is already finished gets its events and ``end`` at once.

A comment line (``: keep-alive``) is sent whenever nothing else was for
``LTH_API_EVENTS_HEARTBEAT_SECONDS``, so that clients and proxies can tell a quiet stream from
a dead one; a client that hears nothing for longer (a buffering proxy) falls back to polling.

**Resuming.** Every event's ``id`` is a cursor ``<levels seen>-<status>-<version>``; a client
that reconnects with ``Last-Event-ID`` gets only what changed since (browsers' EventSource do
this by themselves). A stream is also closed after ``LTH_API_EVENTS_MAX_SECONDS`` (clients
reconnect with the cursor), which bounds what one connection can hold.

**Cost and isolation.** The stream holds no database connection between looks: every
``LTH_API_EVENTS_POLL_SECONDS`` it takes one from the pool inside one thread hop, checks the
caller's key again (revoking it ends the stream) and reads the experiment's version columns,
and reads the rest only when they changed. Another owner's experiment is a 404, as everywhere.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from service.consumers import CONSUMERS, Consumers
from service.errors import ApiError, Unprocessable, detail
from service.presenters import experiment_out
from service.reads import authorized_read, not_found, stamped
from store import reads
from store.models import FINISHED_STATUSES, Status
from store.reads import ExperimentRow
from store.settings import Settings

#: ``<levels seen>-<status>-<version>``; the version is empty until a progress event was sent
#: (the first status event's id is ``0-queued-``, and a client may resume from it).
_CURSOR = re.compile(r"([0-9]{1,6})-([a-z]{1,16})-([0-9a-f]{24}|)")
#: What Last-Event-ID may hold (openapi.yaml says so): a cursor, or nothing (from the start).
LAST_EVENT_ID_PATTERN = rf"^(?:{_CURSOR.pattern})?$"


@dataclass(frozen=True)
class Cursor:
    """What a client has seen: how many levels, which status, which version of the row."""

    levels: int = 0
    status: str = ""
    version: str = ""

    def __str__(self) -> str:
        return f"{self.levels}-{self.status}-{self.version}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        if not value:
            return cls()
        match = _CURSOR.fullmatch(value)
        if match is None:
            raise Unprocessable(
                "Last-Event-ID is not a cursor this API sent (expected "
                "<levels>-<status>-<24 hex digits or none>, the id of an event); leave it out "
                "to start from the beginning",
                error_type="invalid_last_event_id",
                details=[detail(["header", "Last-Event-ID"], "invalid cursor", "value_error")],
            )
        return cls(int(match.group(1)), match.group(2), match.group(3))


def _version(row: ExperimentRow, consumers: Consumers | None) -> str:
    return stamped(row.version, consumers)[0].strip('"')


def _event_kind(name: str, description: str, data: dict[str, Any]) -> dict[str, Any]:
    """One kind of event: its name, and its ``data`` (a JSON text) and what that holds."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name, "description": description},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
            "id": {
                "type": "string",
                "pattern": f"^{_CURSOR.pattern}$",
                "description": "The cursor to send back as Last-Event-ID.",
            },
            "retry": {"type": "integer", "minimum": 0},
        },
    }


_STATUS = {"type": "string", "enum": [str(s) for s in Status]}
#: One parsed event of the stream (OpenAPI 3.1 describes a text/event-stream response by the
#: schema of each event: its `event`, `data`, `id` and `retry` fields); schemathesis checks
#: every event the stream sends against it. Comment lines (heartbeats) carry no event.
SSE_EVENT: dict[str, Any] = {
    "oneOf": [
        _event_kind(
            "status",
            "The status changed.",
            {
                "type": "object",
                "required": ["status", "cancel_requested"],
                "properties": {
                    "status": _STATUS,
                    "cancel_requested": {"type": "boolean"},
                    "error": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ExperimentError"},
                            {"type": "null"},
                        ]
                    },
                },
            },
        ),
        _event_kind("level", "A level finished.", {"$ref": "#/components/schemas/LevelSummary"}),
        _event_kind("progress", "Progress moved.", {"$ref": "#/components/schemas/Progress"}),
        _event_kind(
            "end",
            "The experiment finished (or was deleted); the stream closes.",
            {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"anyOf": [_STATUS, {"const": "deleted"}]}},
            },
        ),
        _event_kind(
            "error",
            "The stream cannot go on (the key was revoked, the database is down).",
            {"$ref": "#/components/schemas/ErrorInfo"},
        ),
    ]
}


def _event(name: str, data: Any, cursor: Cursor) -> str:
    return f"id: {cursor}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def changes(
    row: ExperimentRow, seen: Cursor, consumers: Consumers | None = None
) -> tuple[list[str], Cursor]:
    """The events that bring a client at ``seen`` up to ``row``, and the new cursor."""
    out: list[str] = []
    version, note = stamped(row.version, consumers)
    version = version.strip('"')
    body = experiment_out(row, note)  # type: ignore[arg-type]
    cursor = seen
    if row.status != seen.status:
        cursor = Cursor(cursor.levels, row.status, cursor.version)
        error = body.error.model_dump(mode="json") if body.error else None
        data = {"status": row.status, "cancel_requested": row.cancel_requested, "error": error}
        out.append(_event("status", data, cursor))
    for level in body.levels[seen.levels :]:
        cursor = Cursor(cursor.levels + 1, cursor.status, cursor.version)
        out.append(_event("level", level.model_dump(mode="json"), cursor))
    if version != seen.version:
        cursor = Cursor(cursor.levels, cursor.status, version)
        out.append(_event("progress", body.progress.model_dump(mode="json"), cursor))
    return out, cursor


async def event_stream(
    request: Request,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
    experiment_id: str,
    last_event_id: str | None,
) -> StreamingResponse:
    """Checks the caller and the experiment now (401/404/422 as JSON), then streams."""
    seen = Cursor.parse(last_event_id)

    consumers: Consumers | None = None

    def load(connection: Any, principal: Any) -> ExperimentRow:
        nonlocal consumers
        consumers = CONSUMERS.get(connection, settings)
        row = reads.experiment(connection, experiment_id, owner=principal.visible_owner)
        if row is None:
            raise not_found(experiment_id)
        return row

    first = await authorized_read(request, settings, credentials, load)

    def poll(connection: Any, principal: Any) -> ExperimentRow | None:
        nonlocal consumers
        consumers = CONSUMERS.get(connection, settings)
        version = reads.version(connection, experiment_id, owner=principal.visible_owner)
        if version is None:
            return None
        if stamped(version, consumers)[0].strip('"') == current_version:
            return current
        return reads.experiment(connection, experiment_id, owner=principal.visible_owner)

    current: ExperimentRow | None = first
    current_version = ""

    async def stream() -> AsyncIterator[str]:
        nonlocal current, current_version
        cursor = seen
        began = last_sent = time.monotonic()
        yield f"retry: {int(1000 * max(1.0, settings.api_events_poll_seconds))}\n: stream open\n\n"
        while True:
            if current is None:
                yield _event("end", {"status": "deleted"}, cursor)
                return
            current_version = _version(current, consumers)
            events, cursor = changes(current, cursor, consumers)
            for text in events:
                yield text
            if events:
                last_sent = time.monotonic()
            if current.status in FINISHED_STATUSES:
                yield _event("end", {"status": current.status}, cursor)
                return
            now = time.monotonic()
            if now - began >= settings.api_events_max_seconds:
                return  # the client reconnects with Last-Event-ID
            if now - last_sent >= settings.api_events_heartbeat_seconds:
                yield ": keep-alive\n\n"
                last_sent = now
            await anyio.sleep(settings.api_events_poll_seconds)
            try:
                current = await authorized_read(request, settings, credentials, poll)
            except ApiError as exc:  # the key was revoked meanwhile, or the database is down
                data = {"type": exc.error_type, "message": exc.message}
                yield f"event: error\ndata: {json.dumps(data)}\n\n"
                return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        },
    )
