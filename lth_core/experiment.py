"""Iterative magnitude pruning: levels of (prune, reset, train) with controls, resumable from
its artifact store. `Experiment` is the façade the worker, the CLI and the benchmarks use; it
orders the jobs that live in lth_core.imp:

    folder (which experiment the store holds, theta_0 per trial) → masks (each level's) →
    plans (what each run starts from) → runner (training) → finish (summaries, results,
    the ticket file, diagnostics)

Every run is a pure function of (spec, level, run id) and of what earlier runs left in the
store: its seeds are derived from the spec's seed and its own name, and its inputs (theta_0,
the mask, the rewind point) are artifacts. So a worker may die anywhere and a later one simply
runs whatever has no metrics yet, getting bit for bit (on CPU) what an uninterrupted run
gets; and the controls of a level, which depend on nothing but that level's mask, may run
anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lth_core import pruning
from lth_core.imp import integrity
from lth_core.imp.finish import LevelFinisher
from lth_core.imp.folder import ExperimentFolder
from lth_core.imp.mask_source import InitialMask
from lth_core.imp.masks import LevelMasks
from lth_core.imp.plans import ExperimentData, Planner
from lth_core.imp.run_plan import RunPlan
from lth_core.imp.runner import Runner, trains
from lth_core.nn.data import Splits, load_splits
from lth_core.nn.models import PrunableModel, build_model, weight_kinds
from lth_core.pruning import Mask, StateDict
from lth_core.runs import is_ticket
from lth_core.spec import ExperimentSpec, PruningSpec, TrainingSpec
from lth_core.spec.seeds import derive_seed
from lth_core.storage.layout import KEYS, Keys, Layout
from lth_core.storage.store import ArtifactStore, LocalStore, store_at
from lth_core.train.checkpoint import DEFAULT_SECONDS
from lth_core.train.training import Cancelled, ProgressEvent

__all__ = [
    "Cancelled",
    "Experiment",
    "InitialMask",
    "ProgressEvent",
    "RunPlan",
    "derive_seed",
    "resolve_device",
]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return resolved


class Experiment:
    def __init__(
        self,
        spec: ExperimentSpec,
        out: Path | str | ArtifactStore,
        *,
        device: str = "auto",
        initial_mask: InitialMask | Path | str | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        splits: Splits | None = None,
        repair: bool = False,
        checkpoint_seconds: float | None = DEFAULT_SECONDS,
    ) -> None:
        """`out`: the experiment's artifact store, or a local folder for one. `splits`: the
        data already loaded (lth_core.preflight.check), else loaded when first needed.
        `repair`: check every artifact first and delete the corrupt ones with what marks
        their runs finished, so those runs train again (`repaired` lists them;
        lth_core.imp.integrity); only the experiment's one holder may. `checkpoint_seconds`:
        a run in training is checkpointed this often besides `training.checkpoint_every`
        (LTH_CHECKPOINT_SECONDS; None or 0: by iterations only; lth_core.train.checkpoint)."""
        self.spec = spec
        self.store = store_at(out)
        self.repaired = integrity.repair(self.store) if repair else []
        root = self.store.root if isinstance(self.store, LocalStore) else Path(str(out))
        self.layout = Layout(root)
        self.device = resolve_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if initial_mask is not None and not isinstance(initial_mask, InitialMask):
            initial_mask = InitialMask(Path(initial_mask), spec.mask)
        if spec.mask is not None and initial_mask is None:
            raise ValueError(
                "spec.mask names an experiment of the service; to run it locally, pass the "
                "mask file itself (lth run --mask FILE)"
            )
        self.initial_mask = initial_mask
        self.folder = ExperimentFolder(spec, self.store, initial_mask, str(root))
        self.trial_seeds = [spec.trial_seed(t) for t in range(spec.trials)]
        self._splits = splits.to(self.device) if splits is not None else None
        template = self.build(self.trial_seeds[0])
        self.kinds = pruning.prunable_kinds(weight_kinds(template), spec.pruning.exclude)
        parameter_count = sum(p.numel() for p in template.parameters())
        self.theta0s = self.folder.theta0s(template, self.build)
        shapes = {name: self.theta0s[0][name].shape for name in self.kinds}
        self.masks = LevelMasks(spec, self.store, self.kinds, shapes, initial_mask)
        data = ExperimentData(lambda: self.splits, self.device, self._input_shape)
        self.planner = Planner(
            spec, self.store, self.masks, self.theta0s, self.build, self.runs_at_level, data
        )
        self.runner = Runner(
            spec, self.store, self.device, self.planner, self.masks, lambda: self.splits, self.build
        )
        self.runner.progress, self.runner.should_stop = progress, should_stop
        self.runner.checkpoint_seconds = checkpoint_seconds
        self.finisher = LevelFinisher(
            spec, self.store, self.masks, self.planner, parameter_count, self._normalization
        )

    # ------------------------------------------------------------ what the experiment is

    @property
    def levels(self) -> range:
        """Level 0 (dense) and the pruning levels (the last one verifies, with `verify`)."""
        return range(self.spec.last_level + 1)

    @property
    def trials(self) -> range:
        return range(self.spec.trials)

    @property
    def pruning(self) -> PruningSpec:
        """The pruning the masks use: the spec's, or rates solved for target_weights."""
        return self.masks.pruning

    @property
    def theta0(self) -> StateDict:
        return self.theta0s[0]

    @property
    def progress(self) -> Callable[[ProgressEvent], None] | None:
        return self.runner.progress

    @progress.setter
    def progress(self, report: Callable[[ProgressEvent], None] | None) -> None:
        self.runner.progress = report

    @property
    def should_stop(self) -> Callable[[], bool] | None:
        return self.runner.should_stop

    @should_stop.setter
    def should_stop(self, check: Callable[[], bool] | None) -> None:
        self.runner.should_stop = check

    def trial_layout(self, trial: int) -> Layout:
        """Where trial `trial`'s weights and masks live, as paths (Keys.of_trial)."""
        return Layout(self.layout.root, Keys.of_trial(trial))

    def runs_at_level(self, level: int) -> list[str]:
        return self.spec.runs_at_level(level, from_mask=self.initial_mask is not None)

    def tickets_at(self, level: int) -> list[str]:
        """The level's ticket runs: one per trial (`ticket`, `ticket.t1`, ...). The next
        level's masks need them all; its controls need nothing further."""
        return [k for k in self.runs_at_level(level) if is_ticket(k)]

    def controls_of(self, level: int) -> list[str]:
        """The level's control runs: every run that is not a trial's ticket."""
        return [k for k in self.runs_at_level(level) if not is_ticket(k)]

    # ------------------------------------------------------------ where it stands

    def is_run_done(self, level: int, kind: str) -> bool:
        return self.store.exists(KEYS.run_metrics(level, kind))

    def tickets_done(self, level: int) -> bool:
        return all(self.is_run_done(level, k) for k in self.tickets_at(level))

    def is_level_done(self, level: int) -> bool:
        return self.store.exists(KEYS.summary(level))

    def pending(self) -> list[tuple[int, str]]:
        return [
            (level, kind)
            for level in self.levels
            if not self.is_level_done(level)
            for kind in self.runs_at_level(level)
            if not self.is_run_done(level, kind)
        ]

    def summaries(self) -> list[dict[str, Any]]:
        return self.finisher.summaries()

    # ------------------------------------------------------------ the jobs, in order

    def run(self) -> list[dict[str, Any]]:
        """Runs whatever is not finished yet, level by level; returns every level's summary."""
        for level in self.levels:
            if self.is_level_done(level):
                continue
            self.prepare_level(level)
            self.train_runs(level)
            self.finish_level(level)
        return self.summaries()

    def prepare_level(self, level: int) -> Mask:
        """Every trial's mask of the level (from its previous level's trained ticket, or
        dense / given at level 0); returns trial 0's."""
        return self.masks.prepare(level)

    def training_for(self, level: int) -> TrainingSpec:
        return self.planner.training_for(level)

    def plan(self, level: int, kind: str) -> RunPlan:
        """What run `kind` (a run id) of `level` starts from: the one place this is decided."""
        return self.planner.plan(level, kind)

    def trains(self, kind: str) -> bool:
        return trains(kind)

    def train_run(
        self,
        level: int,
        kind: str,
        *,
        metrics_key: str | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Trains one run alone and writes it (its metrics under `metrics_key` if given, e.g. a
        worker's staging key); `should_stop` replaces the experiment's stop check."""
        return self.runner.train_run(level, kind, metrics_key=metrics_key, should_stop=should_stop)

    def stacks_level(self, level: int, stack: bool | None = None) -> bool:
        return self.runner.stacks_level(level, stack)

    def stack_groups(self, kinds: list[str], level: int | None = None) -> list[list[str]]:
        return self.runner.stack_groups(kinds, level)

    def train_runs(self, level: int, *, stack: bool | None = None) -> list[dict[str, Any]]:
        """Trains the level's unfinished runs (lth_core.imp.runner.Runner.train_runs)."""
        pending = [k for k in self.runs_at_level(level) if not self.is_run_done(level, k)]
        return self.runner.train_runs(level, pending, stack=stack)

    def finish_level(self, level: int) -> dict[str, Any]:
        """All runs of the level done: writes its summary, results.json and the ticket file;
        checkpoints left by trainings of the level (one interrupted and then trained
        elsewhere, or stacked differently) go."""
        summary = self.finisher.finish_level(level, self)
        self.store.delete(KEYS.checkpoints_dir(level))
        return summary

    def rates_used(self) -> dict[str, Any]:
        return self.masks.rates_used()

    def export_ticket(self, level: int, path: Path, *, trial: int = 0) -> None:
        """The ticket file of `level` (trial `trial`) written to a local `path`."""
        self.finisher.export_ticket(level, LocalStore(path.parent), path.name, trial=trial)

    def instability(self, level: int) -> dict[str, Any]:
        return self.finisher.diagnostics(level, self)["instability"]

    # ------------------------------------------------------------ what the jobs share

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = load_splits(self.spec.dataset, self.spec.seed).to(self.device)
        return self._splits

    def _input_shape(self) -> tuple[int, int, int]:
        shape = self.spec.dataset.input_shape
        return tuple(shape) if shape is not None else self.splits.input_shape  # type: ignore[return-value]

    def build(self, seed: int | None) -> PrunableModel:
        """A fresh model of the experiment on the CPU (initialized from `seed`). A plugin's
        dataset that does not state its shape and classes is loaded to know them."""
        dataset = self.spec.dataset
        shape, classes = dataset.input_shape, dataset.num_classes
        if shape is None or classes is None:
            shape, classes = self.splits.input_shape, self.splits.num_classes
        return build_model(  # type: ignore[return-value]  # a plugin's is a plain nn.Module
            self.spec.model,
            shape,
            classes,
            dropout=self.spec.training.dropout,
            seed=seed,
        )

    def _normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.splits.mean or ()), "std": list(self.splits.std or ())}
