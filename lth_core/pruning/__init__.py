"""Magnitude pruning with exact counts, layer-wise or global, and the random-mask control.

Masks are dicts of bool tensors keyed by state-dict weight name. Counts are decided first
(the fraction of the *remaining* weights, rounded to the nearest whole weight), then the
surviving weights with the smallest magnitude are removed by a stable sort, so the number of
weights left in every layer is exactly what the schedule says and ties break the same way on
every run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from lth_core.spec import LAYER_KINDS, PruningSpec

Mask = dict[str, torch.Tensor]
StateDict = dict[str, torch.Tensor]


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def prunable_kinds(weight_kinds: Mapping[str, str], exclude: list[str]) -> dict[str, str]:
    """The weights a strategy may prune: all conv/linear weights less the excluded kinds/names."""
    unknown = [e for e in exclude if e not in LAYER_KINDS and e not in weight_kinds]
    if unknown:
        raise ValueError(
            f"pruning.exclude names {unknown}: neither a layer kind ({', '.join(LAYER_KINDS)}) "
            f"nor a weight of this model ({', '.join(weight_kinds)})"
        )
    return {
        name: kind
        for name, kind in weight_kinds.items()
        if kind not in exclude and name not in exclude
    }


def dense_mask(shapes: Mapping[str, torch.Size], device: torch.device | str = "cpu") -> Mask:
    return {
        name: torch.ones(shape, dtype=torch.bool, device=device) for name, shape in shapes.items()
    }


def counts(mask: Mapping[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    return {name: {"remaining": int(m.sum()), "total": m.numel()} for name, m in mask.items()}


def fraction_remaining(mask: Mapping[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in mask.values())
    return sum(int(m.sum()) for m in mask.values()) / total if total else 1.0


def prune_level(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    pruning: PruningSpec,
    rounds: int = 1,
) -> Mask:
    """The mask after `rounds` rounds of the spec's strategy (lth_core.pruning.strategies) from `mask`,
    pruning by the magnitudes of `weights` (one-shot pruning is several rounds at once)."""
    from lth_core.registry.strategies import strategy

    entry = strategy(pruning.strategy)
    return entry.prune(weights, mask, entry.keep_counts(mask, kinds, pruning, rounds))


def scores(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    scores = weight.detach().abs().flatten().to(torch.float64)
    return scores.masked_fill(~mask.flatten(), -math.inf)


def keep_largest(scores: torch.Tensor, keep: int) -> torch.Tensor:
    surviving = int(torch.isfinite(scores).sum())
    if keep > surviving:
        raise ValueError(f"cannot keep {keep} weights of {surviving} surviving")
    order = torch.argsort(scores, descending=True, stable=True)
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept[order[:keep]] = True
    return kept


def random_mask_like(mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
    """A random mask with exactly the same number of survivors in every layer."""
    out: Mask = {}
    for name, m in mask.items():
        keep = int(m.sum())
        order = torch.randperm(m.numel(), generator=generator)
        new = torch.zeros(m.numel(), dtype=torch.bool)
        new[order[:keep]] = True
        out[name] = new.view(m.shape).to(m.device)
    return out


def hamming(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Normalized Hamming distance between two masks: the fraction of positions where they
    differ, per layer and over all masked weights (You et al. 2020 compare consecutive masks
    this way)."""
    layers, differ, total = {}, 0, 0
    for name, m in a.items():
        d = int((m.bool() != b[name].bool()).sum())
        layers[name] = d / m.numel() if m.numel() else 0.0
        differ, total = differ + d, total + m.numel()
    return {"overall": differ / total if total else 0.0, "layers": layers}
