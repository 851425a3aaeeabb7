"""What each run starts from, decided here only: its mask, start weights, start iteration,
seeds and schedule (a RunPlan), for the ticket of each trial and every control draw."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from lth_core.imp.masks import LevelMasks
from lth_core.imp.run_plan import RunPlan
from lth_core.nn.models import PrunableModel
from lth_core.pruning import StateDict
from lth_core.registry.controls import control
from lth_core.runs import TICKET, parse_run_id
from lth_core.spec import ExperimentSpec, TrainingSpec
from lth_core.spec.seeds import derive_seed
from lth_core.storage.files import get_tensors
from lth_core.storage.layout import Keys
from lth_core.storage.store import ArtifactStore
from lth_core.train.optim import finetune_schedule


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
    ) -> None:
        self._seed, self._theta0, self._prunable = trial_seed, theta0, prunable
        self._build, self.repeat, self._pruned_from = build, repeat, pruned_from

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


class Planner:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: ArtifactStore,
        masks: LevelMasks,
        theta0s: Sequence[StateDict],
        build: Callable[[int | None], PrunableModel],
        runs_at_level: Callable[[int], list[str]],
    ) -> None:
        self.spec, self.store, self.masks = spec, store, masks
        self.theta0s, self.build, self.runs_at_level = theta0s, build, runs_at_level
        self.trial_seeds = [spec.trial_seed(t) for t in range(spec.trials)]

    def training_for(self, level: int) -> TrainingSpec:
        """The schedule a level's runs train on: the spec's, except classic fine-tuning's
        pruned levels (the final learning rate for finetune_iterations)."""
        base = self.spec.training_at(level)  # the verification rule's at its levels
        if self.spec.reset.mode == "finetune" and level > 0:
            return finetune_schedule(base, self.spec.reset.finetune_iterations or base.iterations)
        return base

    def context(self, trial: int, repeat: int) -> TrialContext:
        return TrialContext(
            self.trial_seeds[trial],
            self.theta0s[trial],
            self.masks.kinds,
            self.build,
            repeat,
            lambda level: self.pruned_from(level, trial),
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
        if base == TICKET:
            start = self.ticket_start(level, trial)
        else:
            entry, context = control(base), self.context(trial, repeat)
            mask = entry.mask(context, level, mask)
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
        )

    def data_seed(self, level: int, trial: int, repeat: int) -> int:
        """A run's data order: its trial's, or at a reference level its unit's (the
        verification's repeats: unit u > 0 has an order of its own)."""
        unit = self.spec.data_unit(level, repeat)
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
