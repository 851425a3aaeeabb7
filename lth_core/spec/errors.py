"""Spec errors worded for people: one line per problem, the same in the CLI and the API.

pydantic's own report is written for programmers (``Input should be a valid number,
unable to parse string as a number [type=float_parsing, input_value='0.01',
input_type=str] For further information visit https://errors.pydantic.dev/...``). Here each
problem becomes ``<field path>: <what is wrong>; <what is allowed>`` with a "did you mean"
for near-miss names (``training.iteratons: unknown field; did you mean 'iterations'?``).
It works over pydantic's error list, not over particular fields, so a field added to the
spec anywhere is covered without a line here. A wrong model name does not also report the
sections its paper defaults would have filled in (``training: Field required``).

Torch-free: the API formats its 422 ``details`` with it.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecProblem:
    loc: Loc  # e.g. ("training", "learning_rate")
    msg: str  # what is wrong, what is allowed, a suggestion
    type: str  # pydantic's error type (stable, for machines)

    @property
    def path(self) -> str:
        """``training.lr_milestones[0]``; ``spec`` for the spec as a whole."""
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "spec"

    @property
    def line(self) -> str:
        return f"{self.path}: {self.msg}"


def _show(value: Any) -> str:
    """A short rendering of a user's value (long ones are cut: it may be huge)."""
    text = repr(value) if isinstance(value, str) else _json(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return repr(value)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes inside an annotation (``X | None``, ``list[X]``...)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The spec section a location points into (None: not a section)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _unwrap(field.annotation)
        model = inner[0] if inner else None
    return model


def _sections(root: type[BaseModel], prefix: Loc = ()) -> Iterable[tuple[Loc, type[BaseModel]]]:
    yield prefix, root
    for name, field in root.model_fields.items():
        for inner in _unwrap(field.annotation):
            yield from _sections(inner, (*prefix, name))


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def _unknown_field(root: type[BaseModel], loc: Loc) -> str:
    name, where = str(loc[-1]), loc[:-1]
    model = _model_at(root, where)
    allowed = sorted(model.model_fields) if model is not None else []
    msg = "unknown field"
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"{msg}; did you mean {close[0]!r}?"
    # The right name in the wrong section: "iterations" at the top is training.iterations.
    elsewhere = [
        _dotted((*prefix, name))
        for prefix, section in _sections(root)
        if prefix != where and name in section.model_fields
    ]
    if elsewhere:
        return f"{msg} here; did you mean {elsewhere[0]!r}?"
    if allowed:
        msg += f"; allowed here: {', '.join(allowed)}"
    return msg


def _choices(ctx: dict[str, Any]) -> list[str]:
    """The allowed values of a Literal, from pydantic's ``expected`` ("'a', 'b' or 'c'")."""
    return re.findall(r"'([^']*)'", str(ctx.get("expected", "")))


def _literal(value: Any, ctx: dict[str, Any]) -> str:
    choices = _choices(ctx)
    msg = f"{_show(value)} is not one of the allowed values: {', '.join(choices)}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
        if close:
            msg += f"; did you mean {close[0]!r}?"
    return msg


def _number(value: Any, what: str) -> str:
    msg = f"must be {what}, got {_kind_of(value)} {_show(value)}"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            msg += f" (write {value.strip()} without quotes)"
    elif isinstance(value, float) and what == "a whole number" and value.is_integer():
        msg += f" (write {int(value)})"
    return msg


_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _grouped(value: float) -> str:
    """``250,000``; ``10.0``; ``1e+08`` stays readable as ``100,000,000``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        value = int(value)
    if isinstance(value, int) and abs(value) >= 10**18:  # 1e300 as a count: not 301 digits
        digits = str(abs(value))
        return f"{'-' if value < 0 else ''}{digits[0]}e{len(digits) - 1}"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _message(root: type[BaseModel], err: dict[str, Any]) -> str:
    kind, value, ctx = err.get("type", ""), err.get("input"), err.get("ctx") or {}
    loc: Loc = tuple(err.get("loc", ()))
    if kind == "extra_forbidden":
        return _unknown_field(root, loc)
    if kind == "missing":
        from lth_core.registry.models import MODELS
        from lth_core.spec.paper_defaults import without_defaults

        if loc == ("model",):
            return f"required; one of {', '.join(MODELS.names())}"
        why = without_defaults(value.get("model")) if isinstance(value, dict) else None
        return f"required: {why}" if why and len(loc) == 1 else "required"
    if kind == "literal_error":
        return _literal(value, ctx)
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return _number(value, "a whole number")
    if kind in ("float_type", "float_parsing"):
        return _number(value, "a number")
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {_kind_of(value)} {_show(value)}"
    if kind in ("string_type", "str_type"):
        return f"must be a string, got {_kind_of(value)} {_show(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {_kind_of(value)} {_show(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be an object ({{...}}), got {_kind_of(value)} {_show(value)}"
    if kind in _BOUNDS:
        limit = next(iter(ctx.values()), None)
        if kind == "less_than_equal" and _is_number(value) and _is_number(limit):
            # Worded as the service's own limits are (service.spec_limits): one message
            # whichever bound a value passes.
            return f"is {_grouped(value)}; the limit is {_grouped(limit)}"
        return f"must be {_BOUNDS[kind]} {limit}, got {_show(value)}"
    if kind == "string_too_long":
        return f"too long: at most {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"too many entries: at most {ctx.get('max_length')}"
    if kind in ("too_short", "string_too_short"):
        return f"too short: at least {ctx.get('min_length')}"
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} does not match the pattern {ctx.get('pattern')}"
    if kind == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, ")
    return str(err.get("msg", ""))


def problems(
    error: ValidationError | Sequence[dict[str, Any]], root: type[BaseModel] | None = None
) -> list[SpecProblem]:
    """Each of pydantic's errors as a SpecProblem, spurious ones dropped."""
    if root is None:
        from lth_core.spec import ExperimentSpec

        root = ExperimentSpec
    errors = error.errors(include_url=False) if isinstance(error, ValidationError) else error
    out = [
        SpecProblem(tuple(e.get("loc", ())), _message(root, e), str(e.get("type"))) for e in errors
    ]
    if any(p.loc == ("model",) for p in out):
        # Without a known model no paper defaults were filled in: what they would have
        # supplied is not missing, the model name is the one problem.
        out = [p for p in out if p.loc == ("model",) or p.type != "missing"]
    return out


def format_problems(found: Sequence[SpecProblem], header: str = "invalid spec") -> str:
    """``<header> (N problems):`` then one indented line per problem."""
    count = "1 problem" if len(found) == 1 else f"{len(found)} problems"
    return "\n".join([f"{header} ({count}):", *(f"  {p.line}" for p in found)])


__all__ = ["SpecProblem", "format_problems", "problems"]
