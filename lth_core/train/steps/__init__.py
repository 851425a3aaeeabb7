"""The four ways to compute a step, one per file, and the choice between them.

K = 1: `MLPStep` (LeNet-300-100 without dropout, gradients by hand) or `AutogradStep`
(anything). K > 1: `StackedMLP` (LeNet by hand, batched matmuls) or `StackedModel` (vmap).
Each hand-written step computes what autograd computes (bit for bit for MLPStep; to float
tolerance for the stacks) and is chosen only where it fits.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lth_core.train.steps.autograd import AutogradStep
from lth_core.train.steps.base import Stepper
from lth_core.train.steps.mlp import MLPStep
from lth_core.train.steps.stacked_mlp import StackedMLP, fits
from lth_core.train.steps.vmap import StackedModel


def stepper_for(models: Sequence[nn.Module]) -> Stepper:
    """The fastest exact stepper for these members (their modules are trained through it)."""
    if len(models) == 1:
        (model,) = models
        params = [p for p in model.parameters() if p.requires_grad]
        return MLPStep.for_model(model, params) or AutogradStep(model)
    return StackedMLP(models) if fits(models) else StackedModel(models)


__all__ = ["AutogradStep", "MLPStep", "StackedMLP", "StackedModel", "Stepper", "stepper_for"]
