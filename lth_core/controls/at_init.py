"""Pruning at initialization: what SNIP, GraSP, SynFlow and magnitude-at-init share.

Each method scores the weights of theta_0 (the trial's initial weights, before any training)
and keeps the highest scores, globally over the weights the ticket's strategy prunes, to the
same number the level's ticket keeps there: the same overall sparsity, each method's own
per-layer distribution. Weights the strategy does not prune (a layer at rate 0) keep the
ticket's mask, and biases and batch norm are never masked. The run then trains from theta_0
on the ticket's schedule, so beside the ticket it answers the reviewer's question "does IMP
beat pruning at initialization?" at every level.

Frankle et al. 2021 ("Pruning Neural Networks at Initialization: Why are We Missing the
Mark?") ablate each method: `shuffle` permutes the mask within each layer (keeps only the
per-layer counts), `reinit` trains the same mask from a fresh init, `invert` keeps the lowest
scores instead of the highest. They are run variants (`snip.shuffle`), chosen in the spec's
`control_options`, and draw from the same scores as the plain run of the same draw.

Scores are float64 on the experiment's device; ties break by position (a stable sort), so
the same spec and seed give the same mask bit for bit on one CPU.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

from lth_core.controls.base import Control
from lth_core.runs import VARIANTS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_core.controls.base import RunContext, StartFactory
    from lth_core.pruning import Mask, StateDict
    from lth_core.spec import ExperimentSpec

ABLATIONS: tuple[str, ...] = VARIANTS
EXAMPLES_PER_CLASS = 10
"""Data-driven scores use 10 training examples per class (Wang et al.'s GraSP sampling; for
10 classes the 100 examples of Lee et al.'s SNIP batch on MNIST)."""


class PruningAtInit(Control):
    """A method that chooses its mask at initialization (see the module docstring)."""

    saves_mask = True
    # The question is whether the ticket beats them, reported per level; a ticket that does
    # not is still what IMP found (Frankle et al. 2021 find IMP ahead at most sparsities).
    ticket_must_beat = False
    options: ClassVar[dict[str, tuple[str, ...]]] = {"ablation": ABLATIONS}
    name: ClassVar[str]
    scoring_passes: ClassVar[int]
    """Forward/backward passes the scores take (the run's cost record: `mask_passes`)."""

    def refuses(self, spec: ExperimentSpec) -> str | None:
        if spec.reset.mode != "init":
            return (
                f"pruning at initialization trains from theta_0 at iteration 0, and with "
                f"reset.mode {spec.reset.mode!r} the ticket does not; use reset.mode 'init' "
                "here and compare the other experiment with /compare"
            )
        return None

    def variant_repeatable(self, variant: str | None) -> bool:
        return self.repeatable or variant in ("shuffle", "reinit")

    @abstractmethod
    def scores(
        self, run: RunContext, level: int, model: nn.Module, names: list[str]
    ) -> dict[str, torch.Tensor]:
        """Each of `names`' scores (higher: kept) for `model` holding theta_0 (level 0's mask
        applied), in eval mode on `run.device`."""

    def choose(
        self, run: RunContext, level: int, candidates: Mask, keep: int, invert: bool
    ) -> Mask:
        """Which `keep` of the `candidates` survive: one shot, the global top scores (the
        lowest with `invert`). SynFlow overrides it with its iterative schedule."""
        names = list(candidates)
        raw = self.scores(run, level, scoring_model(run, candidates), names)
        return keep_top(raw, candidates, keep, invert)

    def mask(self, run: RunContext, level: int, ticket_mask: Mask) -> Mask:
        import torch

        pruned = set(run.pruned_weights())
        names = [n for n in ticket_mask if n in pruned]
        keep = sum(int(ticket_mask[n].sum()) for n in names)
        base = run.base_mask
        candidates = {n: base[n].to(run.device).bool() for n in names}
        variant = run.variant
        chosen = self.choose(run, level, candidates, keep, invert=variant == "invert")
        if variant == "shuffle":
            generator = torch.Generator().manual_seed(run.seed_for(level, self.name, "shuffle"))
            chosen = {n: shuffled(chosen[n], candidates[n], generator) for n in names}
        out = dict(ticket_mask)
        for n in names:
            out[n] = chosen[n].to(ticket_mask[n].device)
        return out

    def start(self, run: RunContext, level: int, ticket_start: StartFactory) -> StateDict:
        if run.variant == "reinit":
            return run.build(seed=run.seed_for(level, self.name, "reinit")).state_dict()
        return run.theta0


def scoring_model(run: RunContext, candidates: Mask) -> nn.Module:
    """theta_0 in a fresh model on the run's device, eval mode (no dropout, batch norm at its
    initial running statistics), weights outside `candidates`' survivors zeroed."""
    import torch

    model = run.build(None)
    model.load_state_dict(run.theta0)
    model.to(run.device).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in candidates.items():
            params[name].mul_(m.to(params[name].dtype))
    return model


def keep_top(
    raw: dict[str, torch.Tensor], candidates: Mask, keep: int, invert: bool = False
) -> Mask:
    """The global top `keep` scores among the candidates (lowest with `invert`), by a stable
    sort; a non-finite score counts as the most extreme finite one."""
    import torch

    names = list(candidates)
    flat = []
    for n in names:
        s = torch.nan_to_num(raw[n].detach().to(torch.float64).flatten(), nan=-1e308)
        s = s.clamp(-1e308, 1e308)
        flat.append((-s if invert else s).masked_fill(~candidates[n].flatten(), -torch.inf))
    kept = top_k_stable(torch.cat(flat), keep) if names else torch.zeros(0, dtype=torch.bool)
    out: Mask = {}
    offset = 0
    for n in names:
        size = candidates[n].numel()
        out[n] = kept[offset : offset + size].view_as(candidates[n])
        offset += size
    return out


def top_k_stable(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """What lth_core.pruning.keep_largest keeps (the `keep` largest, ties to the lower
    position) by a selection instead of a sort: 7x faster on LeNet, and SynFlow selects 100
    times per mask."""
    import torch

    n = scores.numel()
    finite = int(torch.isfinite(scores).sum())
    if keep > finite:
        raise ValueError(f"cannot keep {keep} weights of {finite} surviving")
    if keep <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = torch.kthvalue(scores.cpu(), n - keep + 1).values.to(scores.device)
    above, tied = scores > threshold, scores == threshold
    need = keep - int(above.sum())
    return above | (tied & (torch.cumsum(tied, 0) <= need))


def shuffled(
    mask: torch.Tensor, candidates: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The same number of survivors as `mask`, placed at random among `candidates`."""
    import torch

    where = candidates.flatten().nonzero().flatten().cpu()
    order = where[torch.randperm(where.numel(), generator=generator)]
    out = torch.zeros(mask.numel(), dtype=torch.bool)
    out[order[: int(mask.sum())]] = True
    return out.view(mask.shape).to(mask.device)


def cross_entropy(model: nn.Module, run: RunContext, level: int, name: str, scale: float = 1.0):
    """The mean cross-entropy of `model` on the method's sample of training examples (logits
    divided by `scale`: GraSP's temperature)."""
    import torch.nn.functional as F

    x, y = run.training_examples(EXAMPLES_PER_CLASS, run.seed_for(level, name, "examples"))
    return F.cross_entropy(model(x) / scale, y)
