"""Text the database cannot store is a 422, not a 500.

PostgreSQL refuses the NUL character in ``text`` and ``jsonb`` (SQLite stores it, so the same
request behaved differently on the two), and a lone surrogate (``"\\ud800"`` in JSON, which
Python decodes happily) cannot be encoded as UTF-8 by any driver. Every string of a request body
(keys and values, at any depth) and every query parameter is checked before it reaches a query.
"""

from __future__ import annotations

import re
from typing import Any

from service.errors import Unprocessable, detail

#: NUL, and the surrogate code points that UTF-8 cannot encode.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_storable(value: Any, loc: list[str | int]) -> None:
    """Raises a 422 ``invalid_text`` naming the first string under ``value`` that holds a
    character the database cannot store (walked without recursion: any depth JSON allows)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            found = UNSTORABLE.search(item)
            if found is not None:
                raise _unstorable(where, found.group())
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                stack.append((inner, [*where, key]))
                stack.append((key, [*where, "<key>"]))
        elif isinstance(item, list):
            stack.extend((inner, [*where, i]) for i, inner in reversed(list(enumerate(item))))


def _unstorable(loc: list[str | int], character: str) -> Unprocessable:
    shown = ".".join(str(part) for part in loc)
    message = (
        f"{shown} contains the character U+{ord(character):04X}, which cannot be stored; "
        "remove it (text must be valid Unicode without NUL)"
    )
    return Unprocessable(
        message, error_type="invalid_text", details=[detail(loc, message, "string_unstorable")]
    )
