"""Iterative magnitude pruning: levels of (prune, reset, train) with controls, resumable from disk.

Every run is a pure function of (spec, level, kind) and of what earlier runs left on disk: its
seeds are derived from the spec's seed and its own name, and its inputs (theta_0, the mask, the
rewind point) are files. So a worker may die anywhere and a later one simply runs whatever has
no metrics file yet, getting bit for bit (on CPU) what an uninterrupted run gets; and the
controls of a level, which depend on nothing but that level's mask, may run anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lth_core import pruning
from lth_core.artifacts import load_json, load_tensors, save_json, save_tensors
from lth_core.data import Splits, load_splits
from lth_core.layout import Layout
from lth_core.models import PrunableModel, build_model
from lth_core.results import choose_ticket, level_summary
from lth_core.spec import ExperimentSpec
from lth_core.training import Cancelled, ProgressEvent, RunHooks, train

__all__ = ["Cancelled", "Experiment", "ProgressEvent", "derive_seed", "resolve_device"]

TICKET_FORMAT = "lth-ticket-v1"


def derive_seed(seed: int, *parts: object) -> int:
    """An independent 63-bit seed for each named use of the experiment's seed."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


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
        out_dir: Path | str,
        *,
        device: str = "auto",
        initial_mask: Path | str | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.layout = Layout(Path(out_dir))
        self.device = resolve_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.initial_mask_path = Path(initial_mask) if initial_mask else None
        if spec.mask is not None and self.initial_mask_path is None:
            raise ValueError(
                "spec.mask names an experiment of the service; to run it locally, pass the "
                "mask file itself (lth run --mask FILE)"
            )
        self.progress = progress
        self.should_stop = should_stop
        self._write_spec()
        template = self._build(seed=spec.seed)
        self.kinds = pruning.prunable_kinds(template.weight_kinds(), spec.pruning.exclude)
        self._theta0 = self._load_or_save(self.layout.init_weights, template.state_dict())
        self._splits: Splits | None = None

    # ----------------------------------------------------------------- plan

    @property
    def levels(self) -> range:
        return range(self.spec.pruning.levels + 1)

    def runs_at_level(self, level: int) -> list[str]:
        """Controls need a mask to control for: a dense level 0 has only the ticket run."""
        if level == 0 and self.initial_mask_path is None:
            return ["ticket"]
        return self.spec.run_kinds

    def is_run_done(self, level: int, kind: str) -> bool:
        return self.layout.run_metrics(level, kind).is_file()

    def is_level_done(self, level: int) -> bool:
        return self.layout.summary(level).is_file()

    def pending(self) -> list[tuple[int, str]]:
        return [
            (level, kind)
            for level in self.levels
            if not self.is_level_done(level)
            for kind in self.runs_at_level(level)
            if not self.is_run_done(level, kind)
        ]

    def run(self) -> list[dict[str, Any]]:
        """Runs whatever is not finished yet, level by level, and returns every level's summary."""
        for level in self.levels:
            if self.is_level_done(level):
                continue
            self.prepare_level(level)
            self.train_runs(level)
            self.finish_level(level)
        return self.summaries()

    # ----------------------------------------------------------------- levels

    def prepare_level(self, level: int) -> dict[str, torch.Tensor]:
        """The level's mask: from the previous level's trained ticket (or dense/given at level 0)."""
        path = self.layout.mask(level)
        if path.is_file():
            return load_tensors(path)
        if level == 0:
            mask = self._initial_mask()
        else:
            source = level - 1 if self.spec.pruning.schedule == "iterative" else 0
            if not self.is_run_done(source, "ticket"):
                raise RuntimeError(f"level {level} needs the ticket run of level {source} first")
            base = load_tensors(self.layout.mask(source))
            weights = load_tensors(self.layout.trained_weights(source))
            keep = pruning.keep_counts_after(
                base, self.kinds, self.spec.pruning, rounds=level - source
            )
            mask = pruning.magnitude_prune(weights, base, keep)
        save_tensors(path, mask)
        return mask

    def train_run(self, level: int, kind: str) -> dict[str, Any]:
        if kind not in self.runs_at_level(level):
            raise ValueError(
                f"level {level} has no run {kind!r}; it has {self.runs_at_level(level)}"
            )
        mask = self._mask_for(level, kind)
        start, start_iteration = self._start_for(level, kind)
        model = self._build(seed=None)
        model.load_state_dict(start)
        model.to(self.device)
        rewinding = self.spec.reset.mode == "rewind" and level == 0 and kind == "ticket"
        hooks = RunHooks(
            progress=self._progress_hook(level, kind),
            should_stop=self.should_stop,
            snapshot_at=self.spec.reset.rewind_iteration if rewinding else None,
        )
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(derive_seed(self.spec.seed, level, kind, "dropout"))
            result = train(
                model,
                {name: m.to(self.device) for name, m in mask.items()},
                self.splits,
                self.spec.training,
                augment=self.spec.dataset.augment,
                start_iteration=start_iteration,
                data_seed=derive_seed(self.spec.seed, "data"),
                augment_seed=derive_seed(self.spec.seed, level, kind, "augment"),
                hooks=hooks,
            )
        if kind == "ticket":
            save_tensors(self.layout.trained_weights(level), model.state_dict())
        if hooks.snapshot is not None:
            save_tensors(self.layout.rewind_weights, hooks.snapshot)
        run = {
            "level": level,
            "kind": kind,
            "weights_remaining": pruning.fraction_remaining(mask),
            "start_iteration": start_iteration,
            **result,
        }
        save_json(self.layout.run_metrics(level, kind), run)  # last: marks the run finished
        return run

    def stacks_level(self, level: int, stack: bool | None = None) -> bool:
        """Whether the level's runs train as one stacked model (`lth_core.stacked.should_stack`).

        Depends only on the spec, the device type, torch's thread count and the level, never
        on which of its runs are done: a level interrupted half way is stacked again when it
        resumes. `stack=True` forces stacking where it is exact, False never stacks."""
        from lth_core import stacked

        if self.spec.reset.mode == "rewind" and level == 0:
            return False  # the rewinding ticket takes a snapshot, which only train_run does
        spec, members = self.spec, len(self.runs_at_level(level))
        if stack is not None:
            exact = stacked.why_not_stackable(spec.model, spec.training, spec.dataset.augment)
            return stack and exact is None and members > 1
        return stacked.should_stack(
            spec.model, spec.training, spec.dataset.augment, self.device, members
        )

    def train_runs(self, level: int, *, stack: bool | None = None) -> list[dict[str, Any]]:
        """Trains the level's unfinished runs, stacked where `stacks_level(level, stack)` says.

        Writes exactly the files `train_run` writes. A stacked level always trains all of its
        runs together, also those already done (only the unfinished ones are written): a
        stacked member's bits depend on its fellow members, so a resumed level gives the bits
        an uninterrupted one gives. Stacked runs equal one-by-one runs to float tolerance, not
        bit for bit.
        """
        from lth_core import stacked

        kinds = self.runs_at_level(level)
        pending = [k for k in kinds if not self.is_run_done(level, k)]
        if not pending:
            return []
        if not self.stacks_level(level, stack):
            return [self.train_run(level, kind) for kind in pending]
        models, masks, starts = [], [], set()
        for kind in kinds:
            start, start_iteration = self._start_for(level, kind)
            model = self._build(seed=None)
            model.load_state_dict(start)
            models.append(model.to(self.device))
            masks.append({n: m.to(self.device) for n, m in self._mask_for(level, kind).items()})
            starts.add(start_iteration)
        (start_iteration,) = starts
        results = stacked.train_stacked(
            models,
            masks,
            self.splits,
            self.spec.training,
            start_iteration=start_iteration,
            data_seeds=[derive_seed(self.spec.seed, "data")] * len(kinds),
            hooks=[
                RunHooks(progress=self._progress_hook(level, kind), should_stop=self.should_stop)
                if kind in pending
                else RunHooks(should_stop=self.should_stop)
                for kind in kinds
            ],
        )
        runs = []
        for kind, model, mask, result in zip(kinds, models, masks, results, strict=True):
            if kind not in pending:
                continue
            if kind == "ticket":
                save_tensors(self.layout.trained_weights(level), model.state_dict())
            run = {
                "level": level,
                "kind": kind,
                "weights_remaining": pruning.fraction_remaining(mask),
                "start_iteration": start_iteration,
                **result,
            }
            save_json(self.layout.run_metrics(level, kind), run)
            runs.append(run)
        return runs

    def finish_level(self, level: int) -> dict[str, Any]:
        runs = {
            kind: load_json(self.layout.run_metrics(level, kind))
            for kind in self.runs_at_level(level)
        }
        mask = load_tensors(self.layout.mask(level))
        summary = level_summary(level, runs, pruning.counts(mask))
        save_json(self.layout.summary(level), summary)
        summaries = self.summaries()
        ticket_level = choose_ticket(summaries, self.spec.ticket_tolerance)
        if ticket_level is not None:
            self.export_ticket(ticket_level, self.layout.ticket)
        save_json(
            self.layout.results,
            {
                "spec": self.spec.model_dump(mode="json"),
                "ticket_level": ticket_level,
                "levels": summaries,
            },
        )
        return summary

    def summaries(self) -> list[dict[str, Any]]:
        return [load_json(self.layout.summary(level)) for level in self.layout.finished_levels()]

    def export_ticket(self, level: int, path: Path) -> None:
        """Masks and the weights the ticket starts from, with the spec and metrics as metadata.

        `init/<name>` holds every state-dict entry unmasked (theta_0, or theta_k when rewinding);
        multiply the weights named in `mask/<name>` by their mask to get the ticket itself.
        """
        mask = load_tensors(self.layout.mask(level))
        start, start_iteration = self._start_for(level, "ticket")
        tensors = {f"mask/{n}": m for n, m in mask.items()}
        tensors.update({f"init/{n}": t for n, t in start.items()})
        metadata = {
            "format": TICKET_FORMAT,
            "level": str(level),
            "start_iteration": str(start_iteration),
            "spec": self.spec.model_dump_json(),
            "metrics": json.dumps(load_json(self.layout.summary(level))),
        }
        save_tensors(path, tensors, metadata)

    # ----------------------------------------------------------------- internals

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = load_splits(self.spec.dataset).to(self.device)
        return self._splits

    def _build(self, seed: int | None) -> PrunableModel:
        dataset = self.spec.dataset
        return build_model(
            self.spec.model,
            dataset.input_shape,
            dataset.num_classes,
            dropout=self.spec.training.dropout,
            seed=seed,
        )

    def _write_spec(self) -> None:
        wanted = self.spec.model_dump(mode="json")
        if self.layout.spec.is_file():
            if load_json(self.layout.spec) != wanted:
                raise ValueError(
                    f"{self.layout.root} holds a different experiment; use a new output folder"
                )
            return
        save_json(self.layout.spec, wanted)

    def _load_or_save(
        self, path: Path, tensors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if path.is_file():
            return load_tensors(path)
        save_tensors(path, tensors)
        return {k: v.detach().clone() for k, v in tensors.items()}

    def _initial_mask(self) -> dict[str, torch.Tensor]:
        shapes = {name: self._theta0[name].shape for name in self.kinds}
        if self.initial_mask_path is None:
            return pruning.dense_mask(shapes)
        given = load_tensors(self.initial_mask_path)
        given = {k.removeprefix("mask/"): v for k, v in given.items() if not k.startswith("init/")}
        missing = sorted(set(shapes) - set(given))
        extra = sorted(set(given) - set(shapes))
        if missing or extra:
            raise ValueError(
                f"mask does not fit {self.spec.model}: missing {missing or 'nothing'}, "
                f"unexpected {extra or 'nothing'}"
            )
        for name, shape in shapes.items():
            if given[name].shape != shape:
                raise ValueError(
                    f"mask for {name} has shape {list(given[name].shape)}, the model needs {list(shape)}"
                )
        return {name: given[name].to(torch.bool) for name in shapes}

    def _mask_for(self, level: int, kind: str) -> dict[str, torch.Tensor]:
        mask = self.prepare_level(level)
        if kind == "random_prune":
            g = torch.Generator().manual_seed(derive_seed(self.spec.seed, level, "random_prune"))
            return pruning.random_mask_like(mask, g)
        return mask

    def _start_for(self, level: int, kind: str) -> tuple[dict[str, torch.Tensor], int]:
        """The weights a run starts from, and the iteration its schedule and data resume at."""
        mode = self.spec.reset.mode
        start_iteration = self.spec.reset.rewind_iteration if mode == "rewind" and level > 0 else 0
        if kind == "random_reinit":
            fresh = self._build(seed=derive_seed(self.spec.seed, level, "random_reinit"))
            return fresh.state_dict(), start_iteration
        if level == 0 or mode == "init":
            return self._theta0, 0 if level == 0 else start_iteration
        if mode == "rewind":
            return load_tensors(self.layout.rewind_weights), start_iteration
        return load_tensors(self.layout.trained_weights(level - 1)), 0  # finetune

    def _progress_hook(
        self, level: int, kind: str
    ) -> Callable[[int, dict[str, float] | None], None] | None:
        if self.progress is None:
            return None
        report = self.progress
        total = self.spec.training.iterations

        def hook(iteration: int, record: dict[str, float] | None) -> None:
            report(ProgressEvent(level, kind, iteration, total, record))

        return hook
