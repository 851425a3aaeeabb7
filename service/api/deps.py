"""Dependencies shared by the routes: settings, a database session, the id, the JSON body.

The caller (API key, owner) is resolved in :mod:`service.auth`; every route passes the owner
down to the repository, which restricts reads and writes to that owner's experiments.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.errors import Unavailable, Unprocessable, detail
from service.text import check_storable
from store.db import get_engine, session_factory
from store.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def open_engine(settings: Settings) -> Engine:
    """The settings' engine, or a 503 that says the database cannot be opened."""
    try:
        return get_engine(settings)
    except OSError as exc:  # e.g. the SQLite directory cannot be created
        raise Unavailable(
            f"the database cannot be opened: {exc}", error_type="database_unavailable"
        ) from exc


def _session(settings: Settings, *, read_only: bool) -> Iterator[Session]:
    session = session_factory(open_engine(settings), read_only=read_only)()
    try:
        yield session
    finally:
        session.close()


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """A session per request; routes commit explicitly (before enqueueing or deleting files)."""
    yield from _session(settings, read_only=False)


def get_read_session(settings: SettingsDep) -> Iterator[Session]:
    """A session for routes that only read: ``BEGIN DEFERRED`` on SQLite, so it never takes
    (or waits for) the write lock, and closed as soon as the route returns (``scope=
    "function"``), before a file or figure is sent: a slow download holds no database."""
    yield from _session(settings, read_only=True)


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


async def json_body(request: Request) -> Any:
    """The request body parsed as JSON, read here so the route itself can stay synchronous."""
    raw = await request.body()
    if not raw.strip():
        raise Unprocessable(
            "the request needs a JSON body (the experiment spec)",
            error_type="invalid_json",
            details=[detail(["body"], "Field required", "missing")],
        )
    try:
        parsed = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except DuplicateKey as exc:
        raise Unprocessable(
            f"the body names key {exc.key[:80]!r} twice in one object; give each key once",
            error_type="invalid_json",
            details=[detail(["body"], "Duplicate key", "json_duplicate_key")],
        ) from None
    except (ValueError, RecursionError) as exc:
        raise Unprocessable(
            f"the body is not valid JSON: {exc}",
            error_type="invalid_json",
            details=[detail(["body"], "Invalid JSON", "json_invalid")],
        ) from None
    check_storable(parsed, ["body"])
    return parsed


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: a key given twice is an error, not "the last one wins"
    (which a reviewer of the spec would never see)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


JsonBodyDep = Annotated[Any, Depends(json_body)]
