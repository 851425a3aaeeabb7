"""Which level is finally called the winning ticket, verification included (torch-free).

Without `verify` it is the ticket rule of lth_core.results.summaries over every level. With it, the
cheap levels (patience, early-bird, fewer levels) only propose a mask: the final level, the
verification level, trains it under the paper's rule, and it is the winning ticket only if the
ticket rule, asked about the dense level 0 and the verification level (both trained under
that rule), picks it. Until it has run, nothing is called a ticket. The engine's results.json
and the service (store.experiments) both decide here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lth_core.results.summaries import choose_ticket
from lth_core.spec.experiment_spec import verification_level


def verify_level(spec: Mapping[str, Any]) -> int | None:
    """The verification level of a spec (as JSON), or None when it does not verify."""
    return verification_level(spec.get("verify", False), spec.get("pruning", {}).get("levels", 0))


def final_ticket(spec: Mapping[str, Any], summaries: Iterable[Mapping[str, Any]]) -> int | None:
    """The winning ticket's level (None: none yet, or the final mask failed verification)."""
    summaries = list(summaries)
    tolerance = float(spec.get("ticket_tolerance", 0.0))
    metric = str(spec.get("ticket_metric", "early_stop"))
    level = verify_level(spec)
    if level is None:
        return choose_ticket(summaries, tolerance, metric) if summaries else None
    by_level = {int(s["level"]): s for s in summaries}
    if 0 not in by_level or level not in by_level:
        return None
    chosen = choose_ticket([by_level[0], by_level[level]], tolerance, metric)
    return level if chosen == level else None


def verified(spec: Mapping[str, Any], summaries: Iterable[Mapping[str, Any]]) -> bool | None:
    """Whether the final mask was verified a winning ticket (None: no verification, or not
    run yet)."""
    level = verify_level(spec)
    summaries = list(summaries)
    if level is None or level not in {int(s["level"]) for s in summaries}:
        return None
    return final_ticket(spec, summaries) == level
