"""The run-id grammar: the one definition of how a level's runs are named.

A run id names one run of a level — its metrics file (`levels/LLL/runs/<id>.json`), its claim
and its progress: `kind` for trial 0's first draw (what an experiment without trials has
always called it), `kind.t<trial>` and `.r<repeat>` otherwise. A control run under a variant
(Frankle et al. 2021's ablations of a pruning-at-initialization method: `snip.shuffle`) has
the variant in its kind: it is reported as a kind of its own, beside the plain control. Engine, store, API and web all
read it from here (the web view gets `RUN_ID_PATTERN` from the API), so a name one of them
writes is a name every other one accepts. Torch-free and dependency-free on purpose.
"""

from __future__ import annotations

import re

TICKET = "ticket"
"""The run kind that is not a control: the level's pruned network from its reset weights."""

VARIANTS: tuple[str, ...] = ("shuffle", "reinit", "invert")
"""The run variants: Frankle et al. 2021's ablations of a pruning-at-initialization method
(lth_core.controls.at_init), named here so that a run id is never a file name (`ticket.json`)."""

_VARIANT = "|".join(VARIANTS)
RUN_ID_PATTERN = rf"[a-z][a-z0-9_]{{0,63}}(?:\.(?:{_VARIANT}))?(?:\.t[1-9][0-9]{{0,5}})?(?:\.r[1-9][0-9]{{0,5}})?"
"""A run id as a regular expression (no anchors): JavaScript and Python read it alike."""

_RUN_ID = re.compile(
    rf"(?P<kind>[a-z][a-z0-9_]{{0,63}}(?:\.(?:{_VARIANT}))?)(?:\.t(?P<trial>[1-9][0-9]{{0,5}}))?"
    r"(?:\.r(?P<repeat>[1-9][0-9]{0,5}))?"
)


def run_id(kind: str, trial: int = 0, repeat: int = 0) -> str:
    """The id of draw `repeat` of run `kind` in trial `trial`."""
    return kind + (f".t{trial}" if trial else "") + (f".r{repeat}" if repeat else "")


def variant_kind(control: str, variant: str | None) -> str:
    """The kind of control `control` run under `variant` (`snip.shuffle`; None: `control`)."""
    if variant is None:
        return control
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant[:40]!r} is not one of {', '.join(VARIANTS)}")
    return f"{control}.{variant}"


def split_kind(kind: str) -> tuple[str, str | None]:
    """(control or ticket, variant or None) of a run's kind (`snip.shuffle` -> snip, shuffle)."""
    base, _, variant = kind.partition(".")
    return base, variant or None


def parse_run_id(name: str) -> tuple[str, int, int]:
    """(kind, trial, repeat) of a run id; raises ValueError naming the expected form. The kind
    keeps its variant (`snip.shuffle`); `split_kind` separates them."""
    found = _RUN_ID.fullmatch(name)
    if found is None:
        raise ValueError(
            f"run {name[:80]!r} is not of the form kind[.variant][.t<trial>][.r<repeat>]"
        )
    return found["kind"], int(found["trial"] or 0), int(found["repeat"] or 0)


def is_run_id(name: str) -> bool:
    """Whether `name` is a run id (safe as a file name: no separators, no dots but the two)."""
    return _RUN_ID.fullmatch(name) is not None


def kind_of(name: str) -> str:
    """The run's kind: `ticket` or a control's name, without trial or draw."""
    return parse_run_id(name)[0]


def is_ticket(name: str) -> bool:
    """Whether the run is one trial's ticket (`ticket`, `ticket.t1`, ...)."""
    return kind_of(name) == TICKET
