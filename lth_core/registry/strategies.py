"""The pruning-strategy registry: one line per strategy (each strategy's class is its file in
lth_core/pruning/strategies/, on lth_core.pruning.strategies.base.Strategy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.registry import Registry
from lth_core.registry.plugins import STRATEGIES_GROUP

if TYPE_CHECKING:
    from lth_core.pruning.strategies.base import Strategy

STRATEGIES: Registry[type[Strategy]] = Registry(
    "pruning strategy",
    {
        "layerwise": "lth_core.pruning.strategies.layerwise:Layerwise",
        "global": "lth_core.pruning.strategies.global_:Global",
    },
    group=STRATEGIES_GROUP,
)
#: The built-in names (plugins too: STRATEGIES.names()).
STRATEGY_NAMES: tuple[str, ...] = STRATEGIES.builtin_names()


def strategy(name: str) -> Strategy:
    """The strategy called `name` (ValueError naming the known ones otherwise)."""
    return STRATEGIES.get_entry(name)()
