"""K LeNet-300-100s trained as one: batched matmuls with hand-written gradients.

The general stacked path (lth_core.train.steps.vmap.StackedModel) runs the members through vmap and
autograd, which on a CPU costs more per member than training them one at a time (measured
in bench/speed.py). For the MLP the whole step is a few batched matmuls, so it is written
out here the way lth_core.train.steps.mlp.MLPStep writes out one member's: every layer is a
baddbmm over the K members (a batch shared by all members is an expanded view, not K
copies), the gradients are the members' own (the loss is per member, each the mean over
its batch), and activations and gradients live in buffers (lth_core.train.steps.buffers). What
stacking then saves per member is what one member's step spends outside arithmetic:
kernel calls and Python per layer, per optimizer and mask update, each paid once for K.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lth_core.nn.models.lenet import LeNet300100
from lth_core.train.steps.buffers import allocator
from lth_core.train.steps.stack import Stack

LAYERS = ("fc1", "fc2", "out")


def fits(models: Sequence[nn.Module]) -> bool:
    """Whether every member is a plain LeNet-300-100 (what this class computes)."""
    return all(isinstance(m, LeNet300100) and m.plain_layers() is not None for m in models)


class StackedMLP(Stack):
    """Stacked weights (K, out, in) and biases (K, out) per layer, with forward and gradients."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models or not fits(models):
            raise ValueError("StackedMLP takes one or more LeNet-300-100s without dropout")
        super().__init__(models)
        for layer in LAYERS:
            for kind in ("weight", "bias"):
                name = f"{layer}.{kind}"
                self.params[name] = torch.stack(
                    [getattr(getattr(m, layer), kind).detach() for m in models]
                )
        self.weights = [self.params[f"{layer}.weight"] for layer in LAYERS]
        self.biases = [self.params[f"{layer}.bias"].unsqueeze(1) for layer in LAYERS]
        self._batch = -1

    def _inputs(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        return x.flatten(1).expand(self.k, -1, -1) if shared else x.flatten(2)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits (K, B, classes); x is (B, ...) for all members or (K, B, ...) per member."""
        h = self._inputs(x, shared)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w.transpose(1, 2))
            if i < last:
                h = h.relu_()
        return h

    def _allocate(self, batch: int, like: torch.Tensor) -> None:
        empty = allocator(like)
        k = self.k
        self._batch = batch
        self.acts = [empty(k, batch, w.shape[1]) for w in self.weights]
        classes = self.weights[-1].shape[1]
        self.logp = empty(k, batch, classes)
        self.per_sample, self.total_weight = empty(k * batch), empty()
        self.losses = empty(k)
        # d(mean over a member's batch)/d(per-sample loss): the per-member mean reduction.
        self.mean_grad = torch.full((k * batch,), 1.0 / batch, dtype=like.dtype, device=like.device)
        self.grad_outs = [empty(k, batch, w.shape[1]) for w in self.weights]
        self.grad_pre = [empty(k, batch, w.shape[1]) for w in self.weights]
        self.grads = [torch.empty_like(t) for t in self.params.values()]

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-member mean losses (K,) and gradients in `params` order; y is (K * B,).

        The returned tensors are buffers, valid until the next call.
        """
        aten = torch.ops.aten
        batch = y.shape[0] // self.k
        if batch != self._batch:
            self._allocate(batch, x)
        last = len(self.weights) - 1
        with torch.no_grad():
            inputs = [self._inputs(x, shared)]
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                a = torch.baddbmm(b, inputs[-1], w.transpose(1, 2), out=self.acts[i])
                inputs.append(a if i == last else a.relu_())
            aten._log_softmax.out(inputs.pop(), 2, False, out=self.logp)
            flat = self.logp.view(-1, self.logp.shape[2])
            aten.nll_loss_forward.output(
                flat, y, None, 0, -100, output=self.per_sample, total_weight=self.total_weight
            )
            torch.mean(self.per_sample.view(self.k, batch), 1, out=self.losses)
            g = self.grad_pre[last].view(-1, flat.shape[1])
            aten.nll_loss_backward.grad_input(
                self.mean_grad, flat, y, None, 0, -100, self.total_weight, grad_input=g
            )
            g = aten._log_softmax_backward_data.out(
                g, flat, 1, flat.dtype, out=self.grad_outs[last].view(-1, flat.shape[1])
            ).view(self.k, batch, -1)
            for i in range(last, -1, -1):
                h = inputs[i]
                torch.sum(g, 1, out=self.grads[2 * i + 1])
                torch.bmm(g.transpose(1, 2), h, out=self.grads[2 * i])
                if i:
                    pre = torch.bmm(g, self.weights[i], out=self.grad_pre[i - 1])
                    g = aten.threshold_backward.grad_input(
                        pre, h, 0, grad_input=self.grad_outs[i - 1]
                    )
        return self.losses, self.grads
