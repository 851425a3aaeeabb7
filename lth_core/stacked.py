"""Several runs of one level (the ticket, its controls, or seeds) trained as one stacked model.

A LeNet step is a handful of small kernels: on a GPU most of the device idles while Python
and kernel launches dominate. Stacking K copies of the network along a new leading dimension
runs all K members in the same kernels: LeNet through hand-written batched matmuls
(lth_core.stacked_mlp.StackedMLP), other models through torch.func.stack_module_state + vmap
over functional_call (StackedModel: each Linear becomes a batched matmul and each Conv2d a
grouped convolution). Each member keeps what makes it its own run:
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

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from lth_core import stacked_mlp
from lth_core.data.base import Splits
from lth_core.spec import TrainingSpec
from lth_core.stacked_mlp import StackedMLP
from lth_core.training import (
    BatchOrder,
    Cancelled,
    FusedStep,
    LearningRate,
    RunHooks,
    eval_chunk_size,
    summarize,
    train,
)

# Models whose layers vmap handles exactly (no batch norm, whose running statistics would
# need per-member buffers updated in place under vmap).
STACKABLE_MODELS: frozenset[str] = frozenset({"lenet_300_100", "conv2", "conv4", "conv6"})

# Where stacking is used by default, by device type. Measured with bench/speed.py
# (bench/results/speed.json, speed-1thread.json): on a CPU the vmap path costs more per
# member than one model alone; LeNet's hand-written batched path (lth_core.stacked_mlp) costs
# 0.69-0.89x per member of one-at-a-time training with two threads but 1.06-1.16x with one,
# so a CPU stacks LeNet only when torch has more than one thread. On a GPU a small network
# leaves the device idle and K members cost little more than one.
STACK_BY_DEFAULT: dict[str, frozenset[str]] = {
    "cpu": frozenset({"lenet_300_100"}),
    "cuda": STACKABLE_MODELS,
}
MIN_CPU_THREADS = 2


def why_not_stackable(model: str, cfg: TrainingSpec, augment: bool) -> str | None:
    """None when the stacked path computes what one-by-one training does; else the reason."""
    if model not in STACKABLE_MODELS:
        return f"model {model} is not stackable (batch norm)"
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
    return model in STACK_BY_DEFAULT.get(device.type, frozenset())


class StackedModel:
    """K copies of one architecture as stacked parameters, called through vmap."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("at least one member is needed")
        self.k = len(models)
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        # A weightless copy to call functionally: its own tensors are never used.
        self.base = copy.deepcopy(models[0]).to("meta")
        self.base.train()

    def _call(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits (K, B, classes); x is (B, ...) for all members or (K, B, ...) per member."""
        return vmap(self._call, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-member mean losses (K,) and gradients in `params` order; y is (K * B,).

        The loss differentiated is the sum of the members' mean losses, whose gradient with
        respect to member k's weights is member k's own gradient.
        """
        logits = self(x, shared)
        per_sample = F.cross_entropy(logits.flatten(0, 1), y, reduction="none")
        losses = per_sample.view(self.k, -1).mean(1)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))
        return losses.detach(), list(grads)

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copies each member's trained tensors into its own module."""
        with torch.no_grad():
            for k, model in enumerate(models):
                for name, tensor in model.named_parameters():
                    tensor.copy_(self.params[name][k])
                for name, tensor in model.named_buffers():
                    tensor.copy_(self.buffers[name][k])


@torch.inference_mode()
def evaluate_stacked(
    stacked: StackedModel | StackedMLP, x: torch.Tensor, y: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean loss and accuracy, shape (K,), as device tensors."""
    loss_sum = torch.zeros(stacked.k, device=x.device, dtype=torch.float64)
    correct = torch.zeros(stacked.k, device=x.device, dtype=torch.int64)
    for start in range(0, x.shape[0], chunk):
        logits = stacked(x[start : start + chunk], shared=True)
        target = y[start : start + chunk]
        per_sample = F.cross_entropy(
            logits.flatten(0, 1), target.repeat(stacked.k), reduction="none"
        ).view(stacked.k, -1)
        loss_sum += per_sample.sum(1).double()
        correct += (logits.argmax(2) == target).sum(1)
    n = x.shape[0]
    return loss_sum / n, correct.double() / n


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

    Each result has the fields `lth_core.training.train` returns; `seconds` is the member's
    share (1/K) of the stacked wall time. The members' modules hold their trained weights
    afterwards, as after `train`. Snapshots (rewinding) are not supported here.
    """
    k = len(models)
    if not (len(masks) == len(data_seeds) == len(hooks) == k):
        raise ValueError("models, masks, data_seeds and hooks must have one entry per member")
    if any(h.snapshot_at is not None for h in hooks):
        raise ValueError("snapshots (rewinding) are taken by one-by-one training only")
    if k == 1:
        # A stack of one is one model: its own loop has no batch dimension to carry (the
        # stacked path measured ~1.1x of it for K=1 in bench/speed.py before this shortcut).
        return [
            train(models[0], masks[0], splits, cfg, augment=False,
                  start_iteration=start_iteration, data_seed=data_seeds[0], augment_seed=0,
                  hooks=hooks[0])
        ]  # fmt: skip
    device = splits.train_x.device
    stacked: StackedModel | StackedMLP = (
        StackedMLP(models) if stacked_mlp.fits(models) else StackedModel(models)
    )
    names = list(stacked.params)
    params = [stacked.params[n] for n in names]

    pruned: list[torch.Tensor] = []
    multipliers: list[torch.Tensor] = []
    for name in masks[0]:
        stacked_mask = torch.stack([m[name].to(device) for m in masks])
        if bool(stacked_mask.all()):
            continue
        pruned.append(stacked.params[name])
        multipliers.append(stacked_mask.to(stacked.params[name].dtype))
    with torch.no_grad():
        if pruned:
            torch._foreach_mul_(pruned, multipliers)

    optimizer = FusedStep(params, cfg)
    learning_rate = LearningRate(cfg)
    n_train = splits.train_x.shape[0]
    shared = len(set(data_seeds)) == 1
    orders = [
        BatchOrder(n_train, cfg.batch_size, s, device) for s in data_seeds[: 1 if shared else k]
    ]
    chunk = max(1, eval_chunk_size(models[0], splits.train_x[0].numel()) // k)
    curves: list[list[dict[str, float]]] = [[] for _ in range(k)]
    train_loss_sum = torch.zeros(k, device=device)
    steps_since_eval = 0
    started = time.perf_counter()

    def record(iteration: int) -> None:
        nonlocal train_loss_sum, steps_since_eval
        val_loss, val_acc = evaluate_stacked(stacked, splits.val_x, splits.val_y, chunk)
        _, test_acc = evaluate_stacked(stacked, splits.test_x, splits.test_y, chunk)
        rows = torch.stack([train_loss_sum.double(), val_loss, val_acc, test_acc]).tolist()
        for m in range(k):
            point = {
                "iteration": iteration,
                "train_loss": rows[0][m] / steps_since_eval if steps_since_eval else float("nan"),
                "val_loss": rows[1][m],
                "val_accuracy": rows[2][m],
                "test_accuracy": rows[3][m],
            }
            curves[m].append(point)
            if hooks[m].progress:
                hooks[m].progress(iteration, point)
        train_loss_sum = torch.zeros(k, device=device)
        steps_since_eval = 0
        for h in hooks:
            if h.should_stop and h.should_stop():
                raise Cancelled(f"stopped at iteration {iteration}")

    train_x, train_y = splits.train_x, splits.train_y
    record(start_iteration)
    for iteration in range(start_iteration, cfg.iterations):
        if shared:
            idx = orders[0].indices(iteration)
            x = train_x.index_select(0, idx)
            y = train_y.index_select(0, idx).repeat(k)
        else:
            idx = torch.cat([o.indices(iteration) for o in orders])
            x = train_x.index_select(0, idx).unflatten(0, (k, cfg.batch_size))
            y = train_y.index_select(0, idx)
        losses, grads = stacked.loss_and_grads(x, y, shared)
        with torch.no_grad():
            optimizer.step(grads, learning_rate(iteration))
            if pruned:
                torch._foreach_mul_(pruned, multipliers)
        train_loss_sum.add_(losses)
        steps_since_eval += 1
        done = iteration + 1
        if done % cfg.eval_every == 0 or done == cfg.iterations:
            record(done)

    stacked.write_back(models)
    seconds = (time.perf_counter() - started) / k
    return [summarize(curve, seconds=seconds, iterations=cfg.iterations) for curve in curves]
