"""snip (Lee et al. 2019, "SNIP: Single-shot Network Pruning based on Connection
Sensitivity"): |dL/dtheta * theta| at initialization on a sample of training data, one shot.

The score is the first-order change of the loss when a weight is removed; the sample is 10
training examples per class drawn by (trial seed, level, "snip", "examples"), so each draw
of `control_repeats` scores on its own sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.at_init import PruningAtInit, cross_entropy

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.controls.base import RunContext


class Snip(PruningAtInit):
    name = "snip"
    scoring_passes = 1
    description = "SNIP at init: keep the top |grad * theta_0| on 10 examples per class"

    def scores(
        self, run: RunContext, level: int, model: nn.Module, names: list[str]
    ) -> dict[str, torch.Tensor]:
        import torch

        params = dict(model.named_parameters())
        weights = [params[n] for n in names]
        with torch.enable_grad():
            loss = cross_entropy(model, run, level, self.name)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
        return {
            n: (torch.zeros_like(w) if g is None else g * w).detach().abs()
            for n, w, g in zip(names, weights, grads, strict=True)
        }
