"""Pruning strategy registry: how many weights survive a round and which, one file each.

Torch-free to import (the spec takes its allowed names from here). An entry module defines

    def keep_counts(mask: Mask, kinds: dict[str, str], pruning: PruningSpec, rounds: int) -> Keep
    def prune(weights: StateDict, mask: Mask, keep: Keep) -> Mask

where Keep is the entry's own notion of a count (per layer, or one total). `keep_counts` is
the count after `rounds` iterative rounds from `mask` (one-shot pruning targets the count of
its level); `prune` keeps that many of the largest-magnitude surviving weights.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STRATEGIES: dict[str, str] = {
    "layerwise": "lth_core.strategies.layerwise",
    "global": "lth_core.strategies.global_",
}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)


def strategy(name: str) -> ModuleType:
    if name not in STRATEGIES:
        raise ValueError(f"unknown pruning strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return importlib.import_module(STRATEGIES[name])
