"""Several runs of one level (the ticket, its controls, or seeds) trained as one stacked model.

A LeNet step is a handful of small kernels: on a GPU most of the device idles while Python
and kernel launches dominate. Stacking K copies of the network along a new leading dimension
runs all K members in the same kernels: LeNet through hand-written batched matmuls
(lth_core.train.steps.stacked_mlp.StackedMLP), other models through torch.func.stack_module_state +
vmap over functional_call (lth_core.train.steps.vmap.StackedModel: each Linear becomes a batched
matmul and each Conv2d a grouped convolution). Both are steppers of the one loop
(lth_core.train.loop), so a stack has the callbacks a single run has (snapshots included). Each member keeps what makes it its own run:
- its weights and its mask (stacked along dim 0; the mask multiply is elementwise);
- its optimizer state: Adam and SGD are elementwise, so one fused update over the stacked
  tensors is exactly K independent updates with K sets of moments;
- its batches: members sharing a data seed (every run of one level does) share each batch,
  members with different seeds each get their own (stacked along dim 0);
- its loss, curve, early-stopping metrics and hooks.
Each member's gradient is that of its own mean loss. Results equal one-by-one training to
float tolerance, not bit for bit: a batched matmul can round differently from K single
ones (with one thread LeNet's stacked gradients are bit-identical to one member's; with two,
the output layer's are not).

Whether stacking pays depends on the device: see `should_stack` and bench/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lth_core.nn.data.base import Splits
from lth_core.registry.models import MODEL_NAMES, MODELS
from lth_core.spec import TrainingSpec
from lth_core.train.training import Member, RunHooks, train_members

# Whether and where each model stacks is a fact of its registry entry (`stacking`): models
# without batch norm, whose running statistics would need per-member buffers updated in place
# under vmap. Where stacking is used by default was measured with bench/speed.py
# (bench/results/speed.json, speed-1thread.json): on a CPU the vmap path costs more per
# member than one model alone; LeNet's hand-written batched path costs 0.69-0.89x per member
# of one-at-a-time training with two threads but 1.06-1.16x with one, so a CPU stacks LeNet
# only when torch has more than one thread. On a GPU a small network leaves the device idle
# and K members cost little more than one.
# Built-ins only: a plugin's model trains one run at a time (and a broken plugin's facts must
# not stop this module from importing).
STACKABLE_MODELS: frozenset[str] = frozenset(n for n in MODEL_NAMES if MODELS[n].stacking)
MIN_CPU_THREADS = 2


def why_not_stackable(model: str, cfg: TrainingSpec, augment: bool) -> str | None:
    """None when the stacked path computes what one-by-one training does; else the reason."""
    if model not in STACKABLE_MODELS:
        return f"model {model} is not stackable (batch norm, or a plugin's)"
    if cfg.dropout > 0:
        return "dropout draws per-member random numbers in a different order"
    if augment:
        return "augmentation draws per-member random numbers in a different order"
    return None


def should_stack(
    model: str,
    cfg: TrainingSpec,
    augment: bool,
    device: torch.device,
    members: int,
    threads: int | None = None,
) -> bool:
    """Stack when the spec allows it, there is more than one member, it is exact, and it pays
    on this device (on a CPU: with `threads`, torch's thread count by default, of at least
    MIN_CPU_THREADS). A pure function of the spec, the device type and the thread count, so
    that a level is stacked or not whatever happened to it before (resuming gives the same
    bits)."""
    if cfg.stack_runs == "never" or members < 2:
        return False
    if why_not_stackable(model, cfg, augment) is not None:
        return False
    if device.type == "cpu":
        threads = torch.get_num_threads() if threads is None else threads
        if threads < MIN_CPU_THREADS:
            return False
    stacking = MODELS[model].stacking
    return stacking is not None and device.type in stacking.by_default_on


def train_stacked(
    models: Sequence[nn.Module],
    masks: Sequence[Mapping[str, torch.Tensor]],
    splits: Splits,
    cfg: TrainingSpec,
    *,
    start_iteration: int,
    data_seeds: Sequence[int],
    hooks: Sequence[RunHooks],
) -> list[dict[str, Any]]:
    """Trains every member from start_iteration to cfg.iterations; returns one result per member.

    Each result has the fields `lth_core.train.training.train` returns; `seconds` is the member's
    share (1/K) of the stacked wall time. The members' modules hold their trained weights
    afterwards, as after `train`; a hook's snapshot_at is honoured as there.
    """
    k = len(models)
    if not (len(masks) == len(data_seeds) == len(hooks) == k):
        raise ValueError("models, masks, data_seeds and hooks must have one entry per member")
    members = [
        Member(model, mask, seed, None, hook.progress, hook.snapshot_at)
        for model, mask, seed, hook in zip(models, masks, data_seeds, hooks, strict=True)
    ]
    stops = [h.should_stop for h in hooks if h.should_stop is not None]
    results = train_members(
        members,
        splits,
        cfg,
        start_iteration=start_iteration,
        should_stop=(lambda: any(stop() for stop in stops)) if stops else None,
    )
    for hook, result in zip(hooks, results, strict=True):
        hook.snapshot = result.snapshot
    return [r.metrics for r in results]
