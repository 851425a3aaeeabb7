"""K copies of any vmap-able architecture as one stacked model (functional_call under vmap).

Each Linear becomes a batched matmul and each Conv2d a grouped convolution; the loss
differentiated is the sum of the members' mean losses, whose gradient with respect to
member k's weights is member k's own gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from lth_core.train.steps.stack import Stack


class StackedModel(Stack):
    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__(models)
        params, buffers = stack_module_state(list(models))
        self.params = params
        self.buffers = buffers
        # A weightless copy to call functionally: its own tensors are never used.
        self.base = copy.deepcopy(models[0]).to("meta")
        self.base.train()

    def _call(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        return vmap(self._call, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits = self(x, shared)
        per_sample = F.cross_entropy(logits.flatten(0, 1), y, reduction="none")
        losses = per_sample.view(self.k, -1).mean(1)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))
        return losses.detach(), list(grads)
