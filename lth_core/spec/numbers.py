"""The spec's one integer type: a whole number, written ``2000`` or ``2000.0``.

JSON has one kind of number, and JSON Schema's ``"type": "integer"`` (what openapi.yaml says of
every count in the spec) is any number with a zero fraction, ``2000.0`` included; clients and
generators (JavaScript's ``JSON.stringify`` of a float, numpy, schemathesis) write such
numbers. So the spec accepts them, as the contract says, and stores them as ``int``: the
normalized spec (what duplicate detection and the spec digest compare) holds ``2000`` however
it was written. Everything else stays refused as before (lth_core.spec.errors words it):
``2000.5`` ("must be a whole number"), booleans (``true`` is not a count) and strings.
Torch-free.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict


def whole_number(value: Any) -> int | None:
    """``value`` as an ``int`` when it is an integer or a finite float with no fraction
    (``2000.0`` -> 2000); None for anything else (``2000.5``, ``True``, ``"2000"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _as_int(value: Any) -> Any:
    """A whole float becomes its int; anything else is left for strict int validation to
    refuse (with its usual error, which names the field)."""
    number = whole_number(value)
    return value if number is None else number


#: Every integer field of the spec, tuple and list entries included.
SpecInt = Annotated[int, Strict(), BeforeValidator(_as_int)]


def bounded(*, ge: int | None = None, le: int | None = None) -> Any:
    """SpecInt with its bounds inside, for a count in a union (``bounded(ge=1) | None``): a
    field's ``Field(ge=1)`` on ``SpecInt | None`` would validate, but reach the JSON schema
    (openapi.yaml) as a bare ``ge`` instead of ``minimum``."""
    return Annotated[int, Strict(), Field(ge=ge, le=le), BeforeValidator(_as_int)]


__all__ = ["SpecInt", "bounded", "whole_number"]
