"""grasp (Wang et al. 2020, "Picking Winning Tickets Before Training by Preserving Gradient
Flow"): score -theta * Hg at initialization, remove the highest scores, one shot.

g is the gradient of the loss on a sample of 10 training examples per class (drawn by
(trial seed, level, "grasp", "examples")) with the logits divided by 200 (the reference
code's temperature); Hg, the Hessian-gradient product, by double backpropagation: the
gradient of g . grad L with g held fixed. Removing the weights whose removal reduces the
gradient norm the least (the highest -theta * Hg) is keeping the highest theta * Hg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.at_init import PruningAtInit, cross_entropy

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.controls.base import RunContext

TEMPERATURE = 200.0


def hessian_gradient(loss_fn, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """H g for the loss `loss_fn()` at `weights` (g its gradient, held fixed), by double
    backprop; a model whose loss is not twice differentiable is a one-line ValueError."""
    import torch

    g = [t.detach() for t in torch.autograd.grad(loss_fn(), weights)]
    grads = torch.autograd.grad(loss_fn(), weights, create_graph=True)
    z = sum((a * b).sum() for a, b in zip(grads, g, strict=True))
    if not isinstance(z, torch.Tensor) or not z.requires_grad:
        raise ValueError("grasp needs a loss that is twice differentiable in the weights")
    hg = torch.autograd.grad(z, weights, allow_unused=True)
    return [torch.zeros_like(w) if h is None else h for w, h in zip(weights, hg, strict=True)]


class GraSP(PruningAtInit):
    name = "grasp"
    scoring_passes = 3
    description = "GraSP at init: remove the top -theta_0 * Hg (10 examples per class)"

    def scores(
        self, run: RunContext, level: int, model: nn.Module, names: list[str]
    ) -> dict[str, torch.Tensor]:
        import torch

        params = dict(model.named_parameters())
        weights = [params[n] for n in names]
        with torch.enable_grad():
            hg = hessian_gradient(
                lambda: cross_entropy(model, run, level, self.name, TEMPERATURE), weights
            )
        return {n: (w * h).detach() for n, w, h in zip(names, weights, hg, strict=True)}
