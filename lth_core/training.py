"""One training run of a masked network, with periodic evaluation and early-stopping metrics.

The hot loop touches only tensors already on the device: a batch is an index_select into the
training tensors, the mask is re-applied in place after every optimizer step with one fused
multiply over all pruned weights (so pruned weights stay exactly zero whatever the optimizer's
momentum or weight decay does), and losses stay on the device until an evaluation reads them.
Per step it also avoids what costs time without computing anything (measured in
bench/speed.py): the optimizer is the fused kernel called directly (FusedStep), the learning
rate is not rewritten while the schedule is flat, all-ones masks are not applied, and
LeNet's gradients are computed without the autograd graph (MLPStep). Each of these gives the
same bits as the plain PyTorch way on CPU (tests/test_bench_hot_loop.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
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


class FusedStep:
    """The optimizer update as one fused kernel call over fixed lists of tensors.

    It runs exactly the kernels torch.optim.Adam/SGD(fused=True) run (same arguments, so the
    same bits), without what their step() does in Python on every call: regrouping tensors
    by device and dtype, checking state, profiler hooks and param-group bookkeeping. On a
    LeNet step, which is ~1 ms of arithmetic, that Python was a measurable share.
    """

    def __init__(self, params: list[torch.Tensor], cfg: TrainingSpec) -> None:
        self.params = params
        self.cfg = cfg
        self.adam = cfg.optimizer == "adam"
        if self.adam:
            self.exp_avgs = [torch.zeros_like(p) for p in params]
            self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
            # torch.optim keeps fused Adam's step count as a float32 tensor per parameter; all
            # of them always hold the same count, so one tensor, passed for every parameter,
            # is incremented once per step instead of once per parameter (a ~45 us foreach
            # over scalar tensors on a CPU).
            self.step_count = torch.zeros((), dtype=torch.float32, device=params[0].device)
            self.steps = [self.step_count] * len(params)
        else:
            self.momentum_buffers: list[torch.Tensor] = []
            self.first_step = cfg.momentum != 0.0

    def step(self, grads: Sequence[torch.Tensor], lr: float) -> None:
        """One update. The fused kernels walk param and grad memory in step, so a gradient
        laid out differently from its parameter (vmap's batched matmuls return transposed
        ones) is copied into the parameter's layout first."""
        cfg = self.cfg
        grads = [
            g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
            for p, g in zip(self.params, grads, strict=True)
        ]
        if self.adam:
            self.step_count.add_(1)
            torch._fused_adam_(
                self.params,
                grads,
                self.exp_avgs,
                self.exp_avg_sqs,
                [],
                self.steps,
                amsgrad=False,
                lr=lr,
                beta1=0.9,
                beta2=0.999,
                weight_decay=cfg.weight_decay,
                eps=1e-8,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
            return
        if self.first_step:
            self.momentum_buffers = [torch.empty_like(g) for g in grads]
        torch._fused_sgd_(
            self.params,
            grads,
            self.momentum_buffers,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            lr=lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
            is_first_step=self.first_step,
            grad_scale=None,
            found_inf=None,
        )
        self.first_step = False


class LearningRate:
    """The schedule's rate at each iteration, recomputed only where it can change."""

    def __init__(self, cfg: TrainingSpec) -> None:
        self.cfg = cfg
        self.constant = not cfg.warmup_iterations and not cfg.lr_milestones

    def __call__(self, iteration: int) -> float:
        if self.constant:
            return self.cfg.learning_rate
        return self.cfg.learning_rate * lr_factor(iteration, self.cfg)


def masks_to_apply(
    model: nn.Module, mask: Mapping[str, torch.Tensor], device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The pruned weights and their masks as float multipliers; all-ones masks are left out.

    A layer with nothing pruned (every layer at level 0, excluded kinds always) would only be
    multiplied by one after every step: skipping it saves a full pass over its weights.
    """
    named = dict(model.named_parameters())
    weights, multipliers = [], []
    for name, m in mask.items():
        if bool(m.all()):
            continue
        weights.append(named[name])
        multipliers.append(m.to(device=device, dtype=named[name].dtype))
    return weights, multipliers


class MLPStep:
    """Loss and gradients of LeNet-300-100 computed by hand, for the hot loop.

    Calls exactly the kernels autograd runs for Linear/ReLU/cross-entropy, in the same order
    with the same arguments, so loss and gradients are bit for bit autograd's (a test checks
    this); but it skips building and walking the graph, which on a LeNet step at batch 60
    costs about a third of the step on a CPU. Every activation and gradient is written into
    a buffer kept from step to step (the kernels' out= forms): a fresh 940 KB first-layer
    gradient each step is an mmap, page faults and a munmap in glibc's allocator, whose cost
    varies with what else the process allocated. The returned loss and gradients are those
    buffers, valid until the next call. Only for the model without dropout; anything else
    goes through autograd.
    """

    def __init__(self, layers: list[nn.Linear]) -> None:
        self.weights = [layer.weight.detach() for layer in layers]
        self.biases = [layer.bias.detach() for layer in layers]
        self._batch = -1

    @staticmethod
    def for_model(model: nn.Module, params: list[torch.Tensor]) -> MLPStep | None:
        from lth_core.models.lenet import LeNet300100

        if not isinstance(model, LeNet300100) or not isinstance(model.drop, nn.Identity):
            return None
        layers = [model.fc1, model.fc2, model.out]
        expected = [t for layer in layers for t in (layer.weight, layer.bias)]
        if len(params) != len(expected) or any(
            a is not b for a, b in zip(params, expected, strict=True)
        ):
            return None
        return MLPStep(layers)

    def _allocate(self, batch: int, like: torch.Tensor) -> None:
        def empty(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=like.dtype, device=like.device)

        self._batch = batch
        self.acts = [empty(batch, w.shape[0]) for w in self.weights]  # after ReLU, in place
        self.logp = empty(batch, self.weights[-1].shape[0])
        self.loss, self.total_weight = empty(), empty()
        self.one = torch.ones((), dtype=like.dtype, device=like.device)
        # Upstream gradients: one per layer output, plus the scratch a ReLU's backward reads.
        self.grad_outs = [empty(batch, w.shape[0]) for w in self.weights]
        self.grad_pre = [empty(batch, w.shape[0]) for w in self.weights]
        # Parameter gradients, weight then bias per layer, first layer first.
        self.grads = [g for w, b in zip(self.weights, self.biases, strict=True)
                      for g in (torch.empty_like(w), torch.empty_like(b))]  # fmt: skip

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        aten = torch.ops.aten
        x = x.flatten(1)
        if x.shape[0] != self._batch:
            self._allocate(x.shape[0], x)
        last = len(self.weights) - 1
        with torch.no_grad():
            inputs = [x]
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                a = torch.addmm(b, inputs[-1], w.t(), out=self.acts[i])
                inputs.append(a if i == last else a.relu_())
            aten._log_softmax.out(inputs.pop(), 1, False, out=self.logp)
            aten.nll_loss_forward.output(
                self.logp, y, None, 1, -100, output=self.loss, total_weight=self.total_weight
            )
            g = self.grad_pre[last]
            aten.nll_loss_backward.grad_input(
                self.one, self.logp, y, None, 1, -100, self.total_weight, grad_input=g
            )
            g = aten._log_softmax_backward_data.out(
                g, self.logp, 1, self.logp.dtype, out=self.grad_outs[last]
            )
            for i in range(last, -1, -1):
                h = inputs[i]
                torch.sum(g, 0, out=self.grads[2 * i + 1])
                torch.mm(g.t(), h, out=self.grads[2 * i])
                if i:
                    pre = torch.mm(g, self.weights[i], out=self.grad_pre[i - 1])
                    g = aten.threshold_backward.grad_input(
                        pre, h, 0, grad_input=self.grad_outs[i - 1]
                    )
        return self.loss, self.grads


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
    pruned, masks = masks_to_apply(model, mask, device)
    if pruned:
        with torch.no_grad():
            torch._foreach_mul_(pruned, masks)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = FusedStep(params, cfg)
    fast_step = MLPStep.for_model(model, params)
    learning_rate = LearningRate(cfg)
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

    train_x, train_y = splits.train_x, splits.train_y
    # Each batch is gathered into the same two tensors: a fresh LeNet batch (188 KB, above
    # glibc's default mmap threshold) can cost an mmap and page faults every step.
    batch_x = train_x.new_empty((cfg.batch_size, *train_x.shape[1:]))
    batch_y = train_y.new_empty((cfg.batch_size,))
    model.train()
    maybe_snapshot(start_iteration)
    record(start_iteration)
    for iteration in range(start_iteration, cfg.iterations):
        idx = order.indices(iteration)
        x = torch.index_select(train_x, 0, idx, out=batch_x)
        y = torch.index_select(train_y, 0, idx, out=batch_y)
        if aug_gen is not None:
            x = flip_and_crop(x, aug_gen, splits.pad_value)
        if fast_step is not None:
            loss, grads = fast_step(x, y)
        else:
            loss = F.cross_entropy(model(x), y)
            # Fresh gradients: no .grad fields to zero, no accumulation into them.
            grads = list(torch.autograd.grad(loss, params))
        with torch.no_grad():
            optimizer.step(grads, learning_rate(iteration))
            if pruned:
                torch._foreach_mul_(pruned, masks)
        train_loss_sum.add_(loss.detach())
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
