"""Loss and gradients of LeNet-300-100 computed by hand, for the hot loop (one run).

Calls exactly the kernels autograd runs for Linear/ReLU/cross-entropy, in the same order
with the same arguments, so loss and gradients are bit for bit autograd's (a test checks
this); but it skips building and walking the graph, which on a LeNet step at batch 60 costs
about a third of the step on a CPU. Every activation and gradient is written into a buffer
(lth_core.train.steps.buffers); the returned loss and gradients are those buffers, valid until the
next call. Only for the model without dropout; anything else goes through autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from lth_core.train.steps.buffers import allocator
from lth_core.train.steps.module import ModuleStepper


class MLPStep(ModuleStepper):
    def __init__(self, model: nn.Module, layers: list[nn.Linear]) -> None:
        super().__init__(model)
        self.weights = [layer.weight.detach() for layer in layers]
        self.biases = [layer.bias.detach() for layer in layers]
        self._batch = -1

    @staticmethod
    def for_model(model: nn.Module, params: list[torch.Tensor]) -> MLPStep | None:
        """The step for a plain LeNet whose trainable tensors are `params`, else None."""
        from lth_core.nn.models.lenet import LeNet300100

        layers = model.plain_layers() if isinstance(model, LeNet300100) else None
        if layers is None:
            return None
        expected = [t for layer in layers for t in (layer.weight, layer.bias)]
        if len(params) != len(expected) or any(
            a is not b for a, b in zip(params, expected, strict=True)
        ):
            return None
        return MLPStep(model, layers)

    def _allocate(self, batch: int, like: torch.Tensor) -> None:
        empty = allocator(like)
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

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self(x, y)

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
