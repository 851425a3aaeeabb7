"""Magnitude pruning: exact counts, layer-wise vs global, exclusions, the random-mask control."""

from __future__ import annotations

import pytest
import torch

from lth_core import pruning
from lth_core.nn.models import build_model
from lth_core.registry.strategies import strategy
from lth_core.spec import PruningSpec


def _lenet_weights() -> dict[str, torch.Tensor]:
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    return {
        name: p.detach() for name, p in model.named_parameters() if name in model.weight_kinds()
    }


KINDS = {"fc1.weight": "fc", "fc2.weight": "fc", "out.weight": "output"}


def _expected_layerwise(levels: int) -> dict[str, int]:
    counts = {"fc1.weight": 235_200, "fc2.weight": 30_000, "out.weight": 1_000}
    rates = {"fc1.weight": 0.2, "fc2.weight": 0.2, "out.weight": 0.1}
    for _ in range(levels):
        counts = {n: c - int(rates[n] * c + 0.5) for n, c in counts.items()}
    return counts


def test_layerwise_prunes_exact_rounded_counts_of_the_remaining_weights() -> None:
    spec = PruningSpec(strategy="layerwise", rates={"fc": 0.2, "output": 0.1})
    weights = _lenet_weights()
    mask = pruning.dense_mask({n: w.shape for n, w in weights.items()})
    for level in range(1, 6):
        mask = pruning.prune_level(weights, mask, KINDS, spec)
        got = {n: int(m.sum()) for n, m in mask.items()}
        assert got == _expected_layerwise(level)
    # Level 1 by hand: 20% of 235,200 is 47,040; 10% of 1,000 is 100.
    assert _expected_layerwise(1) == {
        "fc1.weight": 188_160,
        "fc2.weight": 24_000,
        "out.weight": 900,
    }


def test_layerwise_removes_the_smallest_magnitudes_within_each_layer() -> None:
    spec = PruningSpec(strategy="layerwise", rates={"fc": 0.2, "output": 0.1})
    weights = _lenet_weights()
    mask = pruning.dense_mask({n: w.shape for n, w in weights.items()})
    mask = pruning.prune_level(weights, mask, KINDS, spec)
    for name, m in mask.items():
        kept, dropped = weights[name][m].abs(), weights[name][~m].abs()
        assert kept.min() >= dropped.max()


def test_global_uses_one_threshold_across_layers_and_differs_from_layerwise() -> None:
    weights = _lenet_weights()
    dense = pruning.dense_mask({n: w.shape for n, w in weights.items()})
    glob = PruningSpec(strategy="global", global_rate=0.5)
    mask = pruning.prune_level(weights, dense, KINDS, glob)
    total = sum(m.numel() for m in dense.values())
    assert sum(int(m.sum()) for m in mask.values()) == total - int(0.5 * total + 0.5)
    kept = torch.cat([weights[n][m].abs() for n, m in mask.items()])
    dropped = torch.cat([weights[n][~m].abs() for n, m in mask.items()])
    assert kept.min() >= dropped.max()
    # Glorot scales differ per layer, so one global threshold prunes the layers unevenly.
    fractions = {n: m.float().mean().item() for n, m in mask.items()}
    assert fractions["fc1.weight"] < 0.5 < fractions["out.weight"]


def test_pruned_weights_stay_pruned_in_later_rounds() -> None:
    spec = PruningSpec(strategy="global", global_rate=0.3)
    weights = _lenet_weights()
    mask = pruning.dense_mask({n: w.shape for n, w in weights.items()})
    for _ in range(3):
        shuffled = {n: torch.randn_like(w) for n, w in weights.items()}  # new magnitudes each round
        new = pruning.prune_level(shuffled, mask, KINDS, spec)
        for n in mask:
            assert not (new[n] & ~mask[n]).any()
        mask = new


def test_oneshot_targets_equal_the_iterative_counts() -> None:
    spec = PruningSpec(strategy="layerwise", rates={"fc": 0.2, "output": 0.1})
    weights = _lenet_weights()
    dense = pruning.dense_mask({n: w.shape for n, w in weights.items()})
    assert strategy("layerwise").keep_counts(dense, KINDS, spec, 7) == _expected_layerwise(7)
    once = pruning.prune_level(weights, dense, KINDS, spec, rounds=7)
    assert {n: int(m.sum()) for n, m in once.items()} == _expected_layerwise(7)


def test_exclusions_by_kind_and_name() -> None:
    resnet = build_model("resnet18", (3, 32, 32), 10, seed=0)
    kinds = pruning.prunable_kinds(resnet.weight_kinds(), ["output", "shortcut"])
    assert "out.weight" not in kinds
    assert not any("shortcut" in n for n in kinds)
    shortcut_weights = sum(
        p.numel()
        for n, p in resnet.named_parameters()
        if "shortcut" in n and n.endswith("0.weight")
    )
    assert shortcut_weights == 2560
    assert "fc1.weight" not in pruning.prunable_kinds(KINDS, ["fc1.weight"])
    with pytest.raises(ValueError, match="neither a layer kind"):
        pruning.prunable_kinds(KINDS, ["fc9.weight"])


def test_random_prune_keeps_per_layer_counts_but_not_positions() -> None:
    spec = PruningSpec(strategy="layerwise", rates={"fc": 0.5, "output": 0.5})
    weights = _lenet_weights()
    dense = pruning.dense_mask({n: w.shape for n, w in weights.items()})
    mask = pruning.prune_level(weights, dense, KINDS, spec)
    rand = pruning.random_mask_like(mask, torch.Generator().manual_seed(0))
    for n in mask:
        assert int(rand[n].sum()) == int(mask[n].sum())
        assert not torch.equal(rand[n], mask[n])
