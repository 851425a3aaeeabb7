"""Level summaries and the choice of the winning ticket, torch-free (shared with the API)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lth_core.controls import TICKET

# The fields every run and level summary carries (the service exposes exactly these).
METRIC_FIELDS: tuple[str, ...] = (
    "weights_remaining",
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_test_accuracy",
    "final_test_accuracy",
)


def run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one run, without its curve."""
    return {field: run[field] for field in METRIC_FIELDS}


def level_summary(
    level: int,
    runs: Mapping[str, Mapping[str, Any]],
    layers: Mapping[str, Mapping[str, int]],
) -> dict[str, Any]:
    """The ticket's numbers at the top level, each control's under `controls`."""
    ticket = runs[TICKET]
    return {
        "level": level,
        **run_summary(ticket),
        "controls": {kind: run_summary(run) for kind, run in runs.items() if kind != TICKET},
        "layers": {name: dict(counts) for name, counts in layers.items()},
    }


def choose_ticket(summaries: Iterable[Mapping[str, Any]], tolerance: float) -> int | None:
    """The sparsest level whose early-stop test accuracy is within `tolerance` of level 0's.

    None until level 0 is known: without the dense network there is nothing to compare with.
    """
    by_level = {int(s["level"]): s for s in summaries}
    if 0 not in by_level:
        return None
    bar = by_level[0]["early_stop_test_accuracy"] - tolerance
    winners = [s for s in by_level.values() if s["early_stop_test_accuracy"] >= bar - 1e-12]
    return min(winners, key=lambda s: (s["weights_remaining"], -int(s["level"])))["level"]
