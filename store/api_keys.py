"""API keys: create, list, revoke, and check the key a request presents.

A key looks like ``lth_<id>_<secret>``: ``id`` (12 hex digits) is public and finds the row;
``secret`` (43 URL-safe characters, 256 random bits) is never stored: the row keeps the
SHA-256 of the whole key, compared with :func:`hmac.compare_digest` so that the time a
comparison takes says nothing about how much of a guess was right. Nothing here logs a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import ApiKey, utcnow

KEY_PREFIX = "lth"
_KEY_FORMAT = re.compile(r"lth_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
OWNER_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for. ``owner`` None with ``admin`` True is open mode (no keys)."""

    owner: str | None
    admin: bool
    key_id: str | None = None

    @property
    def visible_owner(self) -> str | None:
        """The owner to restrict reads and writes to; None (no restriction) for an admin."""
        return None if self.admin else self.owner


OPEN_ACCESS = Principal(owner=None, admin=True)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_owner(owner: str) -> str:
    """The owner name if it is one (letters, digits, ``._@-``; up to 200), else ValueError."""
    if not OWNER_FORMAT.fullmatch(owner):
        raise ValueError(
            "an owner is 1-200 characters: letters, digits and . _ @ - (starting with a "
            "letter or digit)"
        )
    return owner


def create_key(session: Session, owner: str, *, admin: bool = False) -> tuple[ApiKey, str]:
    """A new key for ``owner``: the stored row and the key itself, which exists only here."""
    check_owner(owner)
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, owner=owner, key_hash=_digest(key), admin=admin, created_at=utcnow())
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke(session: Session, key_id: str) -> bool:
    """Revokes a key by id (or by the whole key); False if no such active key."""
    match = _KEY_FORMAT.fullmatch(key_id)
    if match:
        key_id = match.group(1)
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)


def any_active(session: Session) -> bool:
    """Whether any unrevoked key exists: with none, a loopback server may run open."""
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def authenticate(session: Session, presented: str) -> Principal | None:
    """The principal of an active key, or None for anything else (malformed, unknown,
    revoked, wrong secret); the caller must not say which, so guessing learns nothing."""

    def find(key_id: str) -> KeyRecord | None:
        row = session.get(ApiKey, key_id)
        if row is None:
            return None
        return KeyRecord(row.id, row.owner, row.key_hash, row.admin, not row.active)

    return authenticate_with(find, presented)


@dataclass(frozen=True)
class KeyRecord:
    """What checking a key needs of its row, however it was read (ORM or Core)."""

    id: str
    owner: str
    key_hash: str
    admin: bool
    revoked: bool


def authenticate_with(find: Callable[[str], KeyRecord | None], presented: str) -> Principal | None:
    """:func:`authenticate` over any way of finding a key's row by id (the API's fast read
    path uses a Core SELECT); the digest is compared in constant time in every case."""
    match = _KEY_FORMAT.fullmatch(presented)
    if match is None:
        return None
    row = find(match.group(1))
    expected = row.key_hash if row is not None else _digest("")
    if not hmac.compare_digest(_digest(presented), expected) or row is None or row.revoked:
        return None
    return Principal(owner=row.owner, admin=row.admin, key_id=row.id)
