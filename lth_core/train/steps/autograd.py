"""The general step: any model, loss and gradients through autograd (one run)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from lth_core.train.steps.module import ModuleStepper


class AutogradStep(ModuleStepper):
    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss = F.cross_entropy(self.model(x), y)
        # Fresh gradients: no .grad fields to zero, no accumulation into them.
        grads = list(torch.autograd.grad(loss, list(self.params.values())))
        return loss.detach(), grads
