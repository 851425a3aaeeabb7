"""What a pruning strategy is: how many weights survive a round, and which."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from lth_core.pruning import Mask
    from lth_core.spec import PruningSpec


class Strategy(ABC):
    """`keep_counts` is the count after `rounds` iterative rounds from `mask` (one-shot pruning
    targets the count of its level), in the strategy's own notion of a count (per layer, or
    one total); `prune` keeps that many of the largest-magnitude surviving weights."""

    @abstractmethod
    def keep_counts(
        self,
        mask: Mapping[str, torch.Tensor],
        kinds: Mapping[str, str],
        pruning: PruningSpec,
        rounds: int,
    ) -> Any: ...

    @abstractmethod
    def prune(
        self, weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], keep: Any
    ) -> Mask: ...
