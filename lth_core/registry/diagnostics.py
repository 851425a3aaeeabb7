"""The diagnostic registry: one line per diagnostic (each is a class in lth_core/diagnostics/
on lth_core.diagnostics.base.Diagnostic). A diagnostic the spec asks for runs at the end of
each level and its result goes into the level's summary under its name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.registry import Registry

if TYPE_CHECKING:
    from lth_core.diagnostics.base import Diagnostic

DIAGNOSTICS: Registry[type[Diagnostic]] = Registry(
    "diagnostic",
    {
        "instability": "lth_core.diagnostics.instability:Instability",
    },
)
