"""magnitude_init: |theta_0|, the global top-k at initialization, one shot (the baseline of
Frankle et al. 2021: magnitude pruning with no training at all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.at_init import PruningAtInit

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.controls.base import RunContext


class MagnitudeInit(PruningAtInit):
    # Deterministic (theta_0's magnitudes): a second draw is the same run.
    repeatable = False
    name = "magnitude_init"
    scoring_passes = 0
    description = "magnitude at init: keep the top |theta_0| globally"

    def scores(
        self, run: RunContext, level: int, model: nn.Module, names: list[str]
    ) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {n: params[n].detach().abs() for n in names}
