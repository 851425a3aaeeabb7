"""synflow (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
conserving synaptic flow"): data-free, iterative.

Every weight is replaced by its absolute value (biases and batch norm shifts by zero, so the
network computes R = 1^T prod|W| 1 exactly), an all-ones input goes through it in float64 in
eval mode, and each weight scores (dR/dtheta) * theta: its share of the synaptic flow, which
sums to R over any layer that cuts the network. Pruning to density rho one shot would empty
whole layers (layer collapse); the paper prunes over 100 rounds to density rho^(k/100) at
round k (the exponential schedule), rescoring the surviving network each round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.at_init import PruningAtInit, keep_top, scoring_model

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.controls.base import RunContext
    from lth_core.pruning import Mask

ROUNDS = 100


def schedule(candidates: int, keep: int, rounds: int = ROUNDS) -> list[int]:
    """How many survive after each round: candidates * rho^(k/rounds), rho = keep/candidates,
    rounded half up, never rising, the last exactly `keep`."""
    from lth_core.pruning import round_half_up

    if candidates == 0 or keep >= candidates:
        return [keep] * rounds
    rho = keep / candidates
    counts = [round_half_up(candidates * rho ** (k / rounds)) for k in range(1, rounds)]
    return [*(max(c, keep) for c in counts), keep]


def linearized(model: nn.Module) -> nn.Module:
    """`model` as SynFlow scores it: float64, every parameter and buffer made non-negative,
    every bias zero (R = 1^T prod|W| 1)."""
    import torch

    model.double()
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            if name.endswith("bias") or name.endswith("running_mean"):
                tensor.zero_()
            else:
                tensor.abs_()
    return model


def synaptic_flow(
    model: nn.Module, names: list[str], input_shape: tuple[int, ...], device: torch.device
) -> dict[str, torch.Tensor]:
    """(dR/dtheta) * theta of each of `names` for the linearized `model` (its weights as they
    are: pruned weights zero)."""
    import torch

    params = dict(model.named_parameters())
    weights = [params[n] for n in names]
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    with torch.enable_grad():
        flow = model(ones).sum()
        grads = torch.autograd.grad(flow, weights, allow_unused=True)
    return {
        n: (torch.zeros_like(w) if g is None else g * w).detach()
        for n, w, g in zip(names, weights, grads, strict=True)
    }


class SynFlow(PruningAtInit):
    # Data-free and deterministic (theta_0 alone): a second draw is the same run.
    repeatable = False
    name = "synflow"
    scoring_passes = ROUNDS
    description = "SynFlow at init: data-free, 100 rounds conserving synaptic flow"

    def scores(
        self, run: RunContext, level: int, model: nn.Module, names: list[str]
    ) -> dict[str, torch.Tensor]:
        """One round's scores (the first round's, on the unpruned candidates)."""
        return synaptic_flow(linearized(model), names, run.input_shape, run.device)

    def choose(
        self, run: RunContext, level: int, candidates: Mask, keep: int, invert: bool
    ) -> Mask:
        import torch

        names = list(candidates)
        model = linearized(scoring_model(run, candidates))
        params = dict(model.named_parameters())
        magnitudes = {n: params[n].detach().clone() for n in names}
        total = sum(int(m.sum()) for m in candidates.values())
        mask = dict(candidates)
        for count in schedule(total, keep):
            with torch.no_grad():
                for n in names:
                    params[n].copy_(magnitudes[n] * mask[n])
            raw = synaptic_flow(model, names, run.input_shape, run.device)
            mask = keep_top(raw, mask, count, invert)
        return mask
