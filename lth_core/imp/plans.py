"""What each run starts from, decided here only: its mask, start weights, start iteration,
seeds and schedule (a RunPlan), for the ticket of each trial and every control draw."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lth_core import pruning
from lth_core.controls.base import Control
from lth_core.imp.masks import LevelMasks
from lth_core.imp.run_plan import RunPlan
from lth_core.nn.data import Splits
from lth_core.nn.models import PrunableModel
from lth_core.pruning import Mask, StateDict
from lth_core.registry.controls import control
from lth_core.runs import TICKET, parse_run_id, split_kind
from lth_core.spec import ExperimentSpec, TrainingSpec
from lth_core.spec.experiment_spec import data_unit
from lth_core.spec.seeds import derive_seed
from lth_core.storage.files import get_json, get_tensors, put_json, put_tensors
from lth_core.storage.layout import Keys
from lth_core.storage.store import ArtifactStore
from lth_core.train.optim import finetune_schedule


@dataclass(frozen=True)
class ExperimentData:
    """The experiment's data as a control may use it (pruning at initialization scores on
    training examples or on the input shape alone), loaded only when first asked for."""

    splits: Callable[[], Splits]
    device: torch.device
    input_shape: Callable[[], tuple[int, int, int]]


class TrialContext:
    """What a control of one trial and one draw may use (lth_core.controls.base.RunContext):
    that trial's theta_0 and seeds; draw r > 0 of a control gets seeds of its own. Trial 0's
    first draw sees the seeds an experiment without trials always had."""

    def __init__(
        self,
        trial_seed: int,
        theta0: StateDict,
        prunable: Collection[str],
        build: Callable[[int | None], PrunableModel],
        repeat: int,
        pruned_from: Callable[[int], tuple[StateDict, StateDict] | None] = lambda level: None,
        *,
        variant: str | None = None,
        pruned: Collection[str] = (),
        base_mask: Callable[[], Mask] | None = None,
        data: ExperimentData | None = None,
    ) -> None:
        self._seed, self._theta0, self._prunable = trial_seed, theta0, prunable
        self._build, self.repeat, self._variant = build, repeat, variant
        self._pruned_from = pruned_from
        self._pruned, self._base_mask, self._data = pruned, base_mask, data

    @property
    def variant(self) -> str | None:
        return self._variant

    def pruned_weights(self) -> Collection[str]:
        return self._pruned

    @property
    def base_mask(self) -> Mask:
        if self._base_mask is None:
            return {n: torch.ones_like(self._theta0[n], dtype=torch.bool) for n in self._prunable}
        return self._base_mask()

    def _needs_data(self) -> ExperimentData:
        if self._data is None:
            raise RuntimeError("this control needs the experiment's data, which was not given")
        return self._data

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self._data is None else self._data.device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._needs_data().input_shape()

    def training_examples(self, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        splits = self._needs_data().splits()
        return class_sample(splits.train_x, splits.train_y, per_class, seed)

    def seed_for(self, *parts: object) -> int:
        return derive_seed(self._seed, *parts, *(("repeat", self.repeat) if self.repeat else ()))

    def build(self, seed: int | None) -> PrunableModel:
        return self._build(seed)

    @property
    def theta0(self) -> StateDict:
        return self._theta0

    def prunable_weights(self) -> Collection[str]:
        return self._prunable

    def pruned_from(self, level: int) -> tuple[StateDict, StateDict] | None:
        return self._pruned_from(level)


def class_sample(
    x: torch.Tensor, y: torch.Tensor, per_class: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `per_class` examples of every class, drawn by `seed` (a CPU generator: the same
    examples on every device), in class order."""
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(y.numel(), generator=generator)
    labels = y.cpu()[perm]
    by_class = torch.argsort(labels, stable=True)
    order, sorted_labels = perm[by_class], labels[by_class]
    first = torch.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = torch.arange(sorted_labels.numel()) - first
    chosen = order[rank < per_class].to(y.device)
    return x[chosen], y[chosen]


class Planner:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: ArtifactStore,
        masks: LevelMasks,
        theta0s: Sequence[StateDict],
        build: Callable[[int | None], PrunableModel],
        runs_at_level: Callable[[int], list[str]],
        data: ExperimentData | None = None,
    ) -> None:
        self.spec, self.store, self.masks = spec, store, masks
        self.theta0s, self.build, self.runs_at_level = theta0s, build, runs_at_level
        self.data = data
        self.trial_seeds = [spec.trial_seed(t) for t in range(spec.trials)]

    def training_for(self, level: int) -> TrainingSpec:
        """The schedule a level's runs train on: the spec's, except classic fine-tuning's
        pruned levels (the final learning rate for finetune_iterations)."""
        base = self.spec.training_at(level)  # the verification rule's at its levels
        if self.spec.reset.mode == "finetune" and level > 0:
            return finetune_schedule(base, self.spec.reset.finetune_iterations or base.iterations)
        return base

    def context(self, trial: int, repeat: int, variant: str | None = None) -> TrialContext:
        return TrialContext(
            self.trial_seeds[trial],
            self.theta0s[trial],
            self.masks.kinds,
            self.build,
            repeat,
            lambda level: self.pruned_from(level, trial),
            variant=variant,
            pruned=self.masks.pruned_names(),
            base_mask=lambda: self.masks.of_trial(0, trial),
            data=self.data,
        )

    def pruned_from(self, level: int, trial: int) -> tuple[StateDict, StateDict] | None:
        """The trained weights a level's mask was pruned from and the mask they trained under
        (None at level 0: its mask was given, not pruned)."""
        if level == 0:
            return None
        source = self.masks.source_level(level)
        keys = Keys.of_trial(trial)
        return get_tensors(self.store, keys.trained_weights(source)), self.masks.of_trial(
            source, trial
        )

    def control_mask(
        self, entry: Control, kind: str, level: int, context: TrialContext, ticket_mask: Mask
    ) -> tuple[Mask, dict[str, Any] | None]:
        """A control's mask; one it finds itself (`saves_mask`) is written beside the level's
        with how it was found, and read back after (a level's runs may train elsewhere)."""
        if not entry.saves_mask:
            return entry.mask(context, level, ticket_mask), None
        keys = Keys.of_trial(parse_run_id(kind)[1])
        key, info_key = keys.control_mask(level, kind), keys.control_mask_info(level, kind)
        if self.store.exists(key) and self.store.exists(info_key):
            return get_tensors(self.store, key), get_json(self.store, info_key)
        started = time.perf_counter()
        mask = entry.mask(context, level, ticket_mask)
        method, variant = split_kind(parse_run_id(kind)[0])
        info = {
            "control": method,
            "variant": variant,
            "weights_remaining": pruning.fraction_remaining(mask),
            "layers": pruning.counts(mask),
            "passes": getattr(entry, "scoring_passes", 0),
            "seconds": time.perf_counter() - started,
        }
        put_tensors(self.store, key, mask)
        put_json(self.store, info_key, info)
        return mask, info

    def plan(self, level: int, kind: str) -> RunPlan:
        """What run `kind` (a run id) of `level` starts from."""
        if kind not in self.runs_at_level(level):
            raise ValueError(
                f"level {level} has no run {kind!r}; it has {self.runs_at_level(level)}"
            )
        spec = self.spec
        base, trial, repeat = parse_run_id(kind)
        seed = self.trial_seeds[trial]
        self.masks.prepare(level)
        mask = self.masks.of_trial(level, trial)
        rewinding = spec.reset.mode == "rewind"
        info = None
        if base == TICKET:
            start = self.ticket_start(level, trial)
        else:
            name, variant = split_kind(base)
            entry, context = control(name), self.context(trial, repeat, variant)
            mask, info = self.control_mask(entry, kind, level, context, mask)
            start = entry.start(context, level, lambda: self.ticket_start(level, trial))
        return RunPlan(
            level=level,
            kind=kind,
            mask=mask,
            start=start,
            start_iteration=spec.reset.rewind_iteration if rewinding and level > 0 else 0,
            data_seed=self.data_seed(level, trial, repeat),
            augment_seed=derive_seed(seed, level, kind, "augment")
            if spec.dataset.augment
            else None,
            dropout_seed=derive_seed(seed, level, kind, "dropout"),
            snapshot_at=spec.reset.rewind_iteration
            if rewinding and level == 0 and base == TICKET and not repeat
            else None,
            keep_at=self.dense_iterations() if level == 0 and base == TICKET and not repeat else (),
            trial=trial,
            training=self.training_for(level),
            mask_info=info,
        )

    def data_seed(self, level: int, trial: int, repeat: int) -> int:
        """A run's data order: its trial's, or at a reference level its unit's (the
        verification's repeats: unit u > 0 has an order of its own)."""
        unit = data_unit(self.spec, level, repeat)
        seed = self.trial_seeds[trial]
        return derive_seed(seed, "data", "repeat", unit) if unit else derive_seed(seed, "data")

    def dense_iterations(self) -> tuple[int, ...]:
        """The iterations whose weights the dense run keeps (lth_core.storage.layout
        Keys.dense_weights): the instability analysis's rewinding iterations."""
        analysis = self.spec.analysis
        if analysis is None or analysis.instability is None:
            return ()
        return tuple(analysis.instability.iterations)

    def ticket_start(self, level: int, trial: int) -> StateDict:
        """The weights a trial's ticket resets to: theta_0 (init), theta_k (rewind), or the
        trained weights it continues from (lr_rewind, finetune: the previous level's, or for a
        one-shot schedule always the dense trained network's)."""
        mode = self.spec.reset.mode
        if level == 0 or mode == "init":
            return self.theta0s[trial]
        keys = Keys.of_trial(trial)
        if mode == "rewind":
            return get_tensors(self.store, keys.rewind_weights)
        return get_tensors(self.store, keys.trained_weights(self.masks.source_level(level)))
