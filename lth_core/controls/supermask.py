"""Supermasks (Zhou et al. 2019, "Deconstructing Lottery Tickets"): a mask on untrained
weights, evaluated with no training at all. Three registered variants, weakest first:

- `supermask`: the ticket's mask applied to theta_0 (mask ⊙ θ0). The plainest reading of "the
  mask alone carries information", and the weakest: measured here on Fashion-MNIST LeNet-300-100
  after 2K iterations, 54.9% at 80% of the weights and 78.0% at 41%.
- `supermask_same_sign`: Zhou et al.'s "large final, same sign" mask — per layer, the weights
  largest at the end of training *among those that kept theta_0's sign* (score
  max(0, θ_final · sign(θ0))), as many as the ticket's mask keeps — on theta_0. Measured here:
  73.0% / 79.6% at the same two sizes.
- `supermask_signed_constant`: that same-sign mask with every kept weight set to a signed
  constant, sign(θ0) times the standard deviation of its layer's weights in theta_0. This is
  the variant behind Zhou et al.'s headline (86% on MNIST, 41% on CIFAR-10 with no training);
  measured here: 76.1% / 82.0%.

(The numbers "measured here" are /work/shared/paper-facts.md's, from this repository's
engine.) Each is evaluated once at its start weights on validation and test; it takes no
optimizer step, so its early-stop iteration is its start iteration and it costs one
evaluation. θ_final is the ticket network the level's mask was pruned from (the previous
level's trained ticket; one-shot: the dense one). Where there is none (level 0 from a given
mask) the same-sign variants keep the ticket's mask itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.controls.base import Control

if TYPE_CHECKING:
    import torch

    from lth_core.controls.base import RunContext, StartFactory
    from lth_core.pruning import Mask, StateDict


class Supermask(Control):
    trains = False
    # Deterministic (the mask on theta_0): a second draw would be the same run.
    repeatable = False
    # Untrained: any trained ticket beats it; it measures the mask, not a bar to clear.
    ticket_must_beat = False
    description = "same mask on theta_0, no training (evaluated as is)"

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        return ticket_mask

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        return run.theta0


def same_sign_scores(
    final: torch.Tensor, theta0: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor:
    """Zhou et al.'s "large final, same sign" score: |θ_final| where θ_final kept θ0's sign,
    0 where it flipped, -1 where the weight was already pruned (never chosen before the rest)."""
    import torch

    score = (final * torch.sign(theta0)).clamp_min(0.0)
    return torch.where(alive, score, torch.full_like(score, -1.0))


def keep_top(score: torch.Tensor, count: int) -> torch.Tensor:
    """A bool mask of the `count` highest scores (ties: the earlier index, deterministic)."""
    import torch

    order = torch.argsort(score.flatten(), descending=True, stable=True)
    keep = torch.zeros(score.numel(), dtype=torch.bool)
    keep[order[:count]] = True
    return keep.view_as(score)


def same_sign_mask(run: RunContext, level: int, ticket_mask: Mask) -> Mask:
    """Per layer, as many weights as the ticket's mask keeps, chosen by `same_sign_scores`."""
    source = run.pruned_from(level)
    if source is None:
        return ticket_mask
    final, alive = source
    theta0 = run.theta0
    return {
        name: keep_top(
            same_sign_scores(final[name].float(), theta0[name].float(), alive[name].bool()),
            int(m.sum()),
        )
        for name, m in ticket_mask.items()
    }


class SupermaskSameSign(Supermask):
    description = "large-final same-sign mask on theta_0, no training (Zhou et al. 2019)"

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        return same_sign_mask(run, level, ticket_mask)


class SupermaskSignedConstant(Supermask):
    description = (
        "large-final same-sign mask, kept weights set to sign(theta_0) times the layer's init "
        "std, no training (Zhou et al. 2019's strongest supermask)"
    )

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        return same_sign_mask(run, level, ticket_mask)

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        import torch

        prunable = run.prunable_weights()
        return {
            name: torch.sign(value) * value.float().std().to(value.dtype)
            if name in prunable
            else value
            for name, value in run.theta0.items()
        }
