"""A control of the plugin's own (entry point group `lth.controls`): keep the largest weights
of theta_0 with the ticket's per-layer counts, from theta_0 (a pruning-at-initialization
baseline). A control is a class on lth_core.controls.base.Control; torch inside its methods.
"""

from __future__ import annotations

from typing import Any

from lth_core.controls.base import Control


class InitMagnitude(Control):
    description = "the largest weights at initialization, the ticket's per-layer counts"
    repeatable = False  # deterministic: one draw per level and trial

    def mask(self, run: Any, level: int, ticket_mask: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, mask in ticket_mask.items():
            weights = run.theta0[name].abs().flatten()
            keep = int(mask.sum())
            kept = weights.new_zeros(weights.shape, dtype=mask.dtype)
            kept[weights.topk(keep).indices] = True
            out[name] = kept.view_as(mask)
        return out

    def start(self, run: Any, level: int, ticket_start: Any) -> dict[str, Any]:
        return ticket_start()
