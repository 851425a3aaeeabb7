"""Each level's masks: from the previous level's trained ticket (or dense / given at level 0),
one per trial, written once and read from the store after.

Also the pruning the masks use (the spec's, or rates solved for `target_weights`) and the
early-bird callback, which draws the next level's would-be mask during training.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from lth_core import pruning
from lth_core.imp.mask_source import InitialMask
from lth_core.imp.run_plan import on_device
from lth_core.pruning import Mask, StateDict
from lth_core.registry.strategies import strategy
from lth_core.runs import TICKET, run_id
from lth_core.spec import ExperimentSpec, PruningSpec
from lth_core.storage import provenance
from lth_core.storage.files import get_tensors, put_tensors
from lth_core.storage.layout import KEYS, Keys
from lth_core.storage.store import ArtifactStore
from lth_core.train.callbacks import EarlyBird


class LevelMasks:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: ArtifactStore,
        kinds: dict[str, str],
        shapes: dict[str, torch.Size],
        initial_mask: InitialMask | None,
    ) -> None:
        """`kinds`: the prunable weights' kinds by name; `shapes`: their shapes."""
        self.spec, self.store, self.kinds = spec, store, kinds
        self.spec_json = spec.model_dump(mode="json")
        self.shapes, self.initial_mask = shapes, initial_mask
        target = spec.pruning.target_weights
        self.pruning = (
            spec.pruning if target is None else solve_rates(spec.pruning, self.initial(), kinds)
        )

    def source_level(self, level: int) -> int:
        """The level whose trained ticket a level's mask is pruned from (one-shot: always 0)."""
        return level - 1 if self.spec.pruning.schedule == "iterative" else 0

    def prepare(self, level: int) -> Mask:
        """Every trial's mask of the level; returns trial 0's."""
        masks = [self._prepare_trial(level, t) for t in range(self.spec.trials)]
        return masks[0]

    def of_trial(self, level: int, trial: int) -> Mask:
        return get_tensors(self.store, Keys.of_trial(trial).mask(level))

    def _prepare_trial(self, level: int, trial: int) -> Mask:
        keys = Keys.of_trial(trial)
        if self.store.exists(keys.mask(level)):
            return get_tensors(self.store, keys.mask(level))
        source: int | None = None
        if level == 0:
            mask = self.initial()
        else:
            source = self.source_level(level)
            ticket = run_id(TICKET, trial)
            if not self.store.exists(KEYS.run_metrics(source, ticket)):
                raise RuntimeError(f"level {level} needs the run {ticket} of level {source} first")
            base = get_tensors(self.store, keys.mask(source))
            weights = get_tensors(self.store, keys.trained_weights(source))
            mask = pruning.prune_level(
                weights, base, self.kinds, self.pruning, rounds=level - source
            )
        meta = provenance.stamp(
            self.spec_json,
            kind="mask",
            level=level,
            trial=trial,
            weights_remaining=provenance.fraction_kept(mask),
            experiment_id=self.store.experiment_id,
            source_level=source,
        )
        put_tensors(self.store, keys.mask(level), mask, meta)
        return mask

    def initial(self) -> Mask:
        """Level 0's mask: dense, or the given mask fitted to the model."""
        if self.initial_mask is None:
            return pruning.dense_mask(self.shapes)
        from lth_core.preflight import fit_mask, read_mask_file

        where = f"mask {self.initial_mask.path}"
        given = read_mask_file(self.initial_mask.path, where, model=self.spec.model)
        return fit_mask(given, self.shapes, self.spec.model, where)

    def pruned_names(self) -> list[str]:
        """The masked weights the strategy prunes: all of them globally, else those whose
        kind's rate is above 0 (what pruning at initialization scores over)."""
        p = self.pruning
        if p.strategy != "layerwise":
            return list(self.kinds)
        return [name for name, kind in self.kinds.items() if getattr(p.rates, kind, 0) > 0]

    def rates_used(self) -> dict[str, float]:
        """The per-level rates the pruning uses (target_weights solved them)."""
        p = self.pruning
        if p.strategy == "global":
            return {"global_rate": p.global_rate}
        return {k: v for k, v in p.rates.model_dump().items() if v}

    def early_bird(
        self, level: int, kinds: Sequence[str], device: torch.device
    ) -> EarlyBird | None:
        """The early-bird callback for the level's ticket run (None: not at this level, or
        the ticket is not among the runs trained)."""
        eb = self.spec.early_bird_at(level)
        if eb is None or TICKET not in kinds:
            return None
        if self.spec.pruning.schedule == "oneshot" and level > 0:
            return None  # one-shot masks all come from level 0's weights
        base = on_device(self.prepare(level), device)
        prunable, p = self.kinds, self.pruning

        def would_be(weights: StateDict) -> Mask:
            return pruning.prune_level(weights, base, prunable, p, rounds=1)

        return EarlyBird(would_be, eb.distance, eb.window, member=list(kinds).index(TICKET))


def solve_rates(
    spec: PruningSpec, base: Mask, kinds: Collection[str] | dict[str, str]
) -> PruningSpec:
    """The spec's pruning, with rates solved for `target_weights` when it is set.

    Every kind's rate is scaled by one factor (layer-wise: the output layer stays at half
    the fc rate as in the paper's defaults; global: global_rate alone), bisected to the
    smallest factor whose exact rounded counts after `levels` rounds leave at most the
    target fraction of the prunable weights. Deterministic: a fixed number of steps.
    """
    target = spec.target_weights
    if target is None:
        return spec
    entry = strategy(spec.strategy)
    total = sum(m.numel() for m in base.values())
    rates = spec.rates.model_dump()
    top = max(rates.values()) if spec.strategy != "global" else spec.global_rate
    if top <= 0:
        raise ValueError("pruning.target_weights needs a nonzero pruning rate to scale")

    def candidate(factor: float) -> PruningSpec:
        if spec.strategy == "global":
            return spec.model_copy(update={"global_rate": min(factor * top, 0.999)})
        scaled = {k: min(v * factor, 0.999) for k, v in rates.items()}
        return spec.model_copy(update={"rates": spec.rates.model_copy(update=scaled)})

    def remaining(p: PruningSpec) -> float:
        keep = entry.keep_counts(base, kinds, p, spec.levels)
        kept = keep if isinstance(keep, int) else sum(keep.values())
        return kept / total

    low, high = 0.0, 0.999 / top
    if remaining(candidate(high)) > target:
        raise ValueError(
            f"pruning.target_weights {target} is out of reach in {spec.levels} levels at "
            f"these rates' ratios; ask for more levels"
        )
    for _ in range(60):
        mid = (low + high) / 2
        if remaining(candidate(mid)) <= target:
            high = mid
        else:
            low = mid
    return candidate(high)
