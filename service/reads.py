"""The fast read paths of the API: one thread, one connection, one validation per request.

A profile of ``GET /experiments/{id}`` (``bench/profile_request.py``) showed where its time
went before: five synchronous dependencies each hopping to the thread pool and back, the ORM
loading the experiment and its levels, the response validated once when built and again by
FastAPI's ``response_model``, and a session holding a pooled connection across those hops
(with more threads than connections, requests then waited for the pool timeout and were
reported as a database outage). Here a read is a coroutine that hops to the thread pool once;
there it opens one read-only Core connection (:func:`store.db.read_connection`), resolves the
caller with the same rule as every route (:func:`service.auth.resolve_principal`), reads with
:mod:`store.reads`, and gives the connection back before the response is sent.

Responses carry a strong ``ETag`` over the experiment's version columns (or, for a page, over
every item's); a request whose ``If-None-Match`` matches is answered ``304`` with no body,
after reading one row (or one page of version columns) and nothing else.

The same version names the experiment's rendered JSON: :data:`RENDERED` keeps the bytes of the
most recent experiments by ETag, so a page of 50 experiments of which one changed reads the
page's version columns, the one changed row with its levels, and joins 49 cached bodies.
An experiment's body is the same whoever may see it (the owner check is the version query's),
so the cache cannot leak anything across owners.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Connection, and_

from service.api.deps import open_engine
from service.auth import principal_on
from service.consumers import Consumers, waiting_note
from service.errors import NotFound
from service.presenters import experiment_out
from store import reads
from store.api_keys import Principal
from store.db import read_connection
from store.experiments import has_model, has_tag, name_contains
from store.settings import Settings

T = TypeVar("T")

#: Sent with every experiment and list answer: a cache may keep it but must revalidate, and an
#: answer depends on who asks (owner isolation).
CACHE_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}


class RenderedCache:
    """The JSON of recently read experiments by ETag (least recently used out first)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()  # reads run in several threads of the pool

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
            return body

    def put(self, etag: str, body: bytes) -> None:
        with self._lock:
            self._bodies[etag] = body
            self._bodies.move_to_end(etag)
            while len(self._bodies) > self.size:
                self._bodies.popitem(last=False)


RENDERED = RenderedCache()


def stamped(version: tuple[Any, ...], consumers: Consumers | None) -> tuple[str, str | None]:
    """The ETag of an experiment's version columns and of what it waits for (a queue nobody
    consumes, service.consumers), and that note."""
    note = waiting_note(version[2], version[6], consumers)
    return reads.etag_of((*version, note) if note else version), note


def render(row: reads.ExperimentRow, consumers: Consumers | None = None) -> tuple[str, bytes]:
    """The experiment's ETag and JSON (built and validated once), remembered under the ETag."""
    etag, note = stamped(row.version, consumers)
    body = experiment_out(row, note).model_dump_json().encode()  # type: ignore[arg-type]
    RENDERED.put(etag, body)
    return etag, body


def not_found(experiment_id: str) -> NotFound:
    return NotFound(f"no experiment with id {experiment_id}")


async def authorized_read(
    request: Request,
    settings: Settings,
    credentials: HTTPAuthorizationCredentials | None,
    work: Callable[[Connection, Principal], T],
) -> T:
    """Runs ``work(connection, principal)`` in one hop to the thread pool, with a read-only
    connection that is back in the pool when this returns."""
    engine = open_engine(settings)

    def job() -> T:
        with read_connection(engine) as connection:
            principal = principal_on(connection, request, settings, credentials)
            return work(connection, principal)

    return await anyio.to_thread.run_sync(job)


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 asks for GET)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


def not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag, **CACHE_HEADERS})


def json_response(body: bytes, etag: str) -> Response:
    return Response(
        content=body, media_type="application/json", headers={"ETag": etag, **CACHE_HEADERS}
    )


def experiment_response(
    connection: Connection,
    experiment_id: str,
    owner: str | None,
    if_none_match: str | None,
    consumers: Consumers | None = None,
) -> Response:
    """The experiment as JSON with its ETag, or 304 when the client's copy is current."""
    version = reads.version(connection, experiment_id, owner=owner)
    if version is None:
        raise not_found(experiment_id)
    etag, _ = stamped(version, consumers)
    if matches(if_none_match, etag):
        return not_modified(etag)
    body = RENDERED.get(etag)
    if body is None:
        row = reads.experiment(connection, experiment_id, owner=owner)
        if row is None:  # deleted in between
            raise not_found(experiment_id)
        etag, body = render(row, consumers)
    return json_response(body, etag)


def list_response(
    connection: Connection,
    *,
    owner: str | None,
    status: str | None,
    tag: str | None,
    limit: int,
    offset: int,
    if_none_match: str | None,
    name: str | None = None,
    model: str | None = None,
    consumers: Consumers | None = None,
) -> Response:
    """One page, newest first, with an ETag over the page; 304 when it has not changed."""
    clauses = [has_tag(connection, tag)] if tag is not None else []
    if name is not None:
        clauses.append(name_contains(name))
    if model is not None:
        clauses.append(has_model(connection, model))
    versions, total = reads.page_versions(
        connection,
        owner=owner,
        status=status,
        tag_clause=and_(*clauses) if clauses else None,
        limit=limit,
        offset=offset,
    )
    query = f"{owner}|{status}|{tag}|{limit}|{offset}|{name}|{model}"
    tags = [stamped(v, consumers)[0] for v in versions]
    etag = reads.list_etag(versions, total, f"{query}|{','.join(tags)}")
    if matches(if_none_match, etag):
        return not_modified(etag)
    bodies = [RENDERED.get(tag) for tag in tags]
    missing = [v[0] for v, body in zip(versions, bodies, strict=True) if body is None]
    rows = {row.id: row for row in reads.experiments_by_id(connection, missing)}
    items = []
    for version, body in zip(versions, bodies, strict=True):
        if body is None:
            row = rows.get(version[0])
            if row is None:  # deleted in between
                continue
            body = render(row, consumers)[1]
        items.append(body)
    # The shape of ExperimentList, joined from the items' bytes (pydantic's compact JSON).
    head = b'{"items":[' + b",".join(items)
    tail = f'],"total":{total},"limit":{limit},"offset":{offset}}}'.encode()
    return json_response(head + tail, etag)
