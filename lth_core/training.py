"""One training run of a masked network, with periodic evaluation and early-stopping metrics.

The hot loop touches only tensors already on the device: a batch is an index_select into the
training tensors, the mask is re-applied in place after every optimizer step with one fused
multiply over all pruned weights (so pruned weights stay exactly zero whatever the optimizer's
momentum or weight decay does), and losses stay on the device until an evaluation reads them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lth_core.data.augment import flip_and_crop
from lth_core.data.base import Splits
from lth_core.spec import TrainingSpec


class Cancelled(Exception):
    """Raised at an evaluation when the caller's should_stop() says so."""


@dataclass(frozen=True)
class ProgressEvent:
    level: int
    kind: str
    iteration: int
    iterations: int
    record: dict[str, float] | None = None


@dataclass
class RunHooks:
    """How a run talks to its caller: progress out, cancellation in, snapshots of weights."""

    progress: Callable[[int, dict[str, float] | None], None] | None = None
    should_stop: Callable[[], bool] | None = None
    snapshot_at: int | None = None  # iteration whose weights to keep (rewinding)
    snapshot: dict[str, torch.Tensor] | None = field(default=None)


def lr_factor(iteration: int, cfg: TrainingSpec) -> float:
    """Linear warmup to the base rate, then a multiplication by gamma at each milestone passed."""
    factor = cfg.lr_gamma ** sum(1 for m in cfg.lr_milestones if iteration >= m)
    if cfg.warmup_iterations and iteration < cfg.warmup_iterations:
        factor *= (iteration + 1) / cfg.warmup_iterations
    return factor


def make_optimizer(params: list[nn.Parameter], cfg: TrainingSpec) -> torch.optim.Optimizer:
    """Fused kernels: one pass over all parameters per step instead of several per tensor."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True
        )
    return torch.optim.SGD(
        params,
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        fused=True,
    )


class BatchOrder:
    """The batches of every iteration, a pure function of (seed, iteration).

    Each epoch is a fresh permutation seeded by (seed, epoch), cut into full batches (the
    remainder is dropped so every step has the same shape); a run that starts at iteration k
    (rewinding) sees exactly the batches the dense run saw from k on.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.per_epoch = n // batch_size
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, iteration: int) -> torch.Tensor:
        epoch, step = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed + epoch * 1_000_003) % 2**63)
            self._perm = torch.randperm(self.n, generator=g).to(self.device)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[step * self.batch_size : (step + 1) * self.batch_size]


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy as device tensors (no host sync until someone reads them)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, x.shape[0], chunk):
        logits = model(x[start : start + chunk])
        target = y[start : start + chunk]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    n = x.shape[0]
    return loss_sum / n, correct.double() / n


def eval_chunk_size(model: nn.Module, input_numel: int) -> int:
    """Large batches for cheap models, smaller ones where activations are big."""
    params = sum(p.numel() for p in model.parameters())
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return 1000 if has_conv else max(1000, min(20_000, 200_000_000 // max(params, input_numel)))


def train(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    splits: Splits,
    cfg: TrainingSpec,
    *,
    augment: bool,
    start_iteration: int,
    data_seed: int,
    augment_seed: int,
    hooks: RunHooks,
) -> dict[str, Any]:
    """Trains from start_iteration to cfg.iterations and returns metrics and the curve."""
    device = splits.train_x.device
    named = dict(model.named_parameters())
    pruned = [named[name] for name in mask]
    masks = [mask[name].to(device=device, dtype=named[name].dtype) for name in mask]
    with torch.no_grad():
        torch._foreach_mul_(pruned, masks)

    optimizer = make_optimizer(list(model.parameters()), cfg)
    order = BatchOrder(splits.train_x.shape[0], cfg.batch_size, data_seed, device)
    aug_gen = torch.Generator(device=device).manual_seed(augment_seed) if augment else None
    chunk = eval_chunk_size(model, splits.train_x[0].numel())
    curve: list[dict[str, float]] = []
    train_loss_sum = torch.zeros((), device=device)
    steps_since_eval = 0
    started = time.perf_counter()

    def record(iteration: int) -> None:
        nonlocal train_loss_sum, steps_since_eval
        val_loss, val_acc = evaluate(model, splits.val_x, splits.val_y, chunk)
        _, test_acc = evaluate(model, splits.test_x, splits.test_y, chunk)
        train_loss = float(train_loss_sum) / steps_since_eval if steps_since_eval else float("nan")
        point = {
            "iteration": iteration,
            "train_loss": train_loss,
            "val_loss": float(val_loss),
            "val_accuracy": float(val_acc),
            "test_accuracy": float(test_acc),
        }
        curve.append(point)
        train_loss_sum = torch.zeros((), device=device)
        steps_since_eval = 0
        if hooks.progress:
            hooks.progress(iteration, point)
        if hooks.should_stop and hooks.should_stop():
            raise Cancelled(f"stopped at iteration {iteration}")

    def maybe_snapshot(iteration: int) -> None:
        if hooks.snapshot_at == iteration:
            hooks.snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}

    model.train()
    maybe_snapshot(start_iteration)
    record(start_iteration)
    for iteration in range(start_iteration, cfg.iterations):
        factor = lr_factor(iteration, cfg)
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * factor
        idx = order.indices(iteration)
        x = splits.train_x.index_select(0, idx)
        y = splits.train_y.index_select(0, idx)
        if aug_gen is not None:
            x = flip_and_crop(x, aug_gen, splits.pad_value)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(pruned, masks)
        train_loss_sum += loss.detach()
        steps_since_eval += 1
        done = iteration + 1
        maybe_snapshot(done)
        if done % cfg.eval_every == 0 or done == cfg.iterations:
            record(done)

    return summarize(curve, seconds=time.perf_counter() - started, iterations=cfg.iterations)


def summarize(curve: list[dict[str, float]], *, seconds: float, iterations: int) -> dict[str, Any]:
    """Early stopping is read off after the fact: the first evaluation with minimum val loss."""
    best = min(curve, key=lambda p: (math.isnan(p["val_loss"]), p["val_loss"]))
    return {
        "early_stop_iteration": int(best["iteration"]),
        "early_stop_val_loss": best["val_loss"],
        "early_stop_val_accuracy": best["val_accuracy"],
        "early_stop_test_accuracy": best["test_accuracy"],
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "iterations": iterations,
        "seconds": seconds,
        "curve": curve,
    }
