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


def layer_rates(kinds: Mapping[str, str], pruning: PruningSpec) -> dict[str, float]:
    return {name: getattr(pruning.rates, kind) for name, kind in kinds.items()}


Counts = dict[str, int] | int


def next_keep_counts(remaining: Counts, kinds: Mapping[str, str], pruning: PruningSpec) -> Counts:
    """How many weights survive one more round: per layer (layer-wise) or in total (global)."""
    if isinstance(remaining, int):
        return remaining - round_half_up(pruning.global_rate * remaining)
    rates = layer_rates(kinds, pruning)
    return {name: n - round_half_up(rates[name] * n) for name, n in remaining.items()}


def surviving(mask: Mapping[str, torch.Tensor], pruning: PruningSpec) -> Counts:
    per_layer = {name: int(m.sum()) for name, m in mask.items()}
    return sum(per_layer.values()) if pruning.strategy == "global" else per_layer


def keep_counts_after(
    mask: Mapping[str, torch.Tensor], kinds: Mapping[str, str], pruning: PruningSpec, rounds: int
) -> Counts:
    """The counts after `rounds` iterative rounds from `mask` (one-shot pruning targets these)."""
    remaining = surviving(mask, pruning)
    for _ in range(rounds):
        remaining = next_keep_counts(remaining, kinds, pruning)
    return remaining


def magnitude_prune(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], keep: Counts
) -> Mask:
    """Keeps the `keep` largest-magnitude surviving weights, per layer (dict) or across all (int)."""
    if isinstance(keep, int):
        names = list(mask)
        scores = torch.cat([_scores(weights[n], mask[n]) for n in names])
        kept = _keep_largest(scores, keep)
        out: Mask = {}
        offset = 0
        for n in names:
            size = mask[n].numel()
            out[n] = kept[offset : offset + size].view_as(mask[n])
            offset += size
        return out
    return {n: _keep_largest(_scores(weights[n], mask[n]), keep[n]).view_as(mask[n]) for n in mask}


def _scores(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    scores = weight.detach().abs().flatten().to(torch.float64)
    return scores.masked_fill(~mask.flatten(), -math.inf)


def _keep_largest(scores: torch.Tensor, keep: int) -> torch.Tensor:
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
