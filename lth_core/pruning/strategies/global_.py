"""global: one magnitude threshold across all pruned layers, removing global_rate of the
remaining weights in total (the paper's rule for VGG-19 and ResNet-18)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lth_core.pruning import Mask, keep_largest, round_half_up, scores
from lth_core.pruning.strategies.base import Strategy
from lth_core.spec import PruningSpec


class Global(Strategy):
    def keep_counts(
        self,
        mask: Mapping[str, torch.Tensor],
        kinds: Mapping[str, str],
        pruning: PruningSpec,
        rounds: int,
    ) -> int:
        remaining = sum(int(m.sum()) for m in mask.values())
        for _ in range(rounds):
            remaining = remaining - round_half_up(pruning.global_rate * remaining)
        return remaining

    def prune(
        self, weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], keep: int
    ) -> Mask:
        names = list(mask)
        kept = keep_largest(torch.cat([scores(weights[n], mask[n]) for n in names]), keep)
        out: Mask = {}
        offset = 0
        for n in names:
            size = mask[n].numel()
            out[n] = kept[offset : offset + size].view_as(mask[n])
            offset += size
        return out
