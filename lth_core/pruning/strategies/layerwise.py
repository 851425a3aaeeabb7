"""layerwise: every layer loses its kind's rate of its remaining weights (pruning.rates), the
paper's rule for LeNet and Conv-2/4/6."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lth_core.pruning import Mask, keep_largest, round_half_up, scores
from lth_core.pruning.strategies.base import Strategy
from lth_core.spec import PruningSpec


class Layerwise(Strategy):
    def keep_counts(
        self,
        mask: Mapping[str, torch.Tensor],
        kinds: Mapping[str, str],
        pruning: PruningSpec,
        rounds: int,
    ) -> dict[str, int]:
        rates = {name: getattr(pruning.rates, kind) for name, kind in kinds.items()}
        remaining = {name: int(m.sum()) for name, m in mask.items()}
        for _ in range(rounds):
            remaining = {name: n - round_half_up(rates[name] * n) for name, n in remaining.items()}
        return remaining

    def prune(
        self,
        weights: Mapping[str, torch.Tensor],
        mask: Mapping[str, torch.Tensor],
        keep: dict[str, int],
    ) -> Mask:
        return {
            n: keep_largest(scores(weights[n], mask[n]), keep[n]).view_as(mask[n]) for n in mask
        }
