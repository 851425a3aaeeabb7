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
import math
import statistics
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import torch

from lth_core import cost, pruning
from lth_core.storage.files import load_json, load_tensors, save_json, save_tensors
from lth_core.callbacks import EarlyBird
from lth_core.controls import TICKET, control, parse_run_id, run_id
from lth_core.data import Splits, load_splits
from lth_core.storage.layout import Layout
from lth_core.loop import summarize
from lth_core.mask_source import InitialMask, mismatch
from lth_core.models import PrunableModel, build_model
from lth_core.optim import finetune_schedule
from lth_core.pruning import Mask, StateDict
from lth_core.results import level_summary, ticket_decision
from lth_core.run_plan import RunPlan, on_device, publish_run
from lth_core.spec import ExperimentSpec, PruningSpec, TrainingSpec
from lth_core.steps.module import eval_chunk_size, evaluate
from lth_core.training import Cancelled, Member, ProgressEvent, train_members
from lth_core.verification import final_ticket, verified

__all__ = [
    "Cancelled",
    "Experiment",
    "InitialMask",
    "ProgressEvent",
    "RunPlan",
    "derive_seed",
    "resolve_device",
]

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
        initial_mask: InitialMask | Path | str | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        splits: Splits | None = None,
    ) -> None:
        """`splits`: the data already loaded (lth_core.preflight.check), else loaded when the
        first run trains."""
        self.spec = spec
        self.layout = Layout(Path(out_dir))
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
        self.progress = progress
        self.should_stop = should_stop
        self._write_spec()
        self.trial_seeds = [spec.trial_seed(t) for t in range(spec.trials)]
        template = self._build(seed=self.trial_seeds[0])
        self.kinds = pruning.prunable_kinds(template.weight_kinds(), spec.pruning.exclude)
        self._parameter_count = sum(p.numel() for p in template.parameters())
        source_init = self._source_init(template.state_dict()) if self._with_init() else None
        self._theta0s = [
            self._load_or_save(
                self.trial_layout(t).init_weights,
                source_init
                if source_init is not None
                else (template if t == 0 else self._build(seed=seed)).state_dict(),
            )
            for t, seed in enumerate(self.trial_seeds)
        ]
        self._theta0 = self._theta0s[0]
        self._splits: Splits | None = splits.to(self.device) if splits is not None else None
        self.pruning = self._effective_pruning()

    # ----------------------------------------------------------------- plan

    @property
    def levels(self) -> range:
        """Level 0 (dense) and the pruning levels (the last one verifies, with `verify`)."""
        return range(self.spec.last_level + 1)

    @property
    def trials(self) -> range:
        return range(self.spec.trials)

    def trial_layout(self, trial: int) -> Layout:
        """Where trial `trial`'s weights and masks live: the folder itself for trial 0 (an
        experiment without trials is laid out as it always was), `trials/NNN/` otherwise.
        Every run's metrics and every level's summary stay in the folder itself."""
        return self.layout if trial == 0 else Layout(self.layout.root / "trials" / f"{trial:03d}")

    def runs_at_level(self, level: int) -> list[str]:
        return self.spec.runs_at_level(level, from_mask=self.initial_mask is not None)

    def tickets_at(self, level: int) -> list[str]:
        """The level's ticket runs: one per trial (`ticket`, `ticket.t1`, ...). The next
        level's masks need them all; its controls need nothing further."""
        return [k for k in self.runs_at_level(level) if parse_run_id(k)[0] == TICKET]

    def controls_of(self, level: int) -> list[str]:
        """The level's control runs: every run that is not a trial's ticket."""
        tickets = set(self.tickets_at(level))
        return [k for k in self.runs_at_level(level) if k not in tickets]

    def tickets_done(self, level: int) -> bool:
        return all(self.is_run_done(level, k) for k in self.tickets_at(level))

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

    def training_for(self, level: int) -> TrainingSpec:
        """The schedule a level's runs train on: the spec's, except classic fine-tuning's
        pruned levels (the final learning rate for finetune_iterations)."""
        spec = self.spec
        base = spec.training_at(level)  # the verification rule's at its levels
        if spec.reset.mode == "finetune" and level > 0:
            return finetune_schedule(base, spec.reset.finetune_iterations or base.iterations)
        return base

    def plan(self, level: int, kind: str) -> RunPlan:
        """What run `kind` (a run id) of `level` starts from: the one place this is decided."""
        if kind not in self.runs_at_level(level):
            raise ValueError(
                f"level {level} has no run {kind!r}; it has {self.runs_at_level(level)}"
            )
        spec = self.spec
        base, trial, repeat = parse_run_id(kind)
        seed, files = self.trial_seeds[trial], self.trial_layout(trial)
        self.prepare_level(level)
        mask = self._trial_mask(level, trial)
        mode = spec.reset.mode
        rewinding = mode == "rewind"
        start_iteration = spec.reset.rewind_iteration if rewinding and level > 0 else 0

        def ticket_start() -> StateDict:
            if level == 0 or mode == "init":
                return self._theta0s[trial]
            if rewinding:
                return load_tensors(files.rewind_weights)
            # lr_rewind and finetune continue from trained weights: the previous level's, or
            # for a one-shot schedule always the dense trained network's.
            source = level - 1 if spec.pruning.schedule == "iterative" else 0
            return load_tensors(files.trained_weights(source))

        if base == TICKET:
            start = ticket_start()
        else:
            entry = control(base)
            context = TrialContext(self, trial, repeat)
            mask = entry.mask(context, level, mask)
            start = entry.start(context, level, ticket_start)
        return RunPlan(
            level=level,
            kind=kind,
            mask=mask,
            start=start,
            start_iteration=start_iteration,
            data_seed=derive_seed(seed, "data"),
            augment_seed=derive_seed(seed, level, kind, "augment")
            if spec.dataset.augment
            else None,
            dropout_seed=derive_seed(seed, level, kind, "dropout"),
            snapshot_at=spec.reset.rewind_iteration
            if rewinding and level == 0 and base == TICKET
            else None,
            trial=trial,
            training=self.training_for(level),
        )

    # ----------------------------------------------------------------- levels

    def prepare_level(self, level: int) -> Mask:
        """Every trial's mask of the level, from its previous level's trained ticket (or
        dense/given at level 0); returns trial 0's."""
        masks = [self._prepare_trial(level, t) for t in self.trials]
        return masks[0]

    def _prepare_trial(self, level: int, trial: int) -> Mask:
        path = self.trial_layout(trial).mask(level)
        if path.is_file():
            return load_tensors(path)
        if level == 0:
            mask = self._initial_mask()
        else:
            source = level - 1 if self.spec.pruning.schedule == "iterative" else 0
            ticket = run_id(TICKET, trial)
            if not self.is_run_done(source, ticket):
                raise RuntimeError(f"level {level} needs the run {ticket} of level {source} first")
            files = self.trial_layout(trial)
            base = load_tensors(files.mask(source))
            weights = load_tensors(files.trained_weights(source))
            mask = pruning.prune_level(
                weights, base, self.kinds, self.pruning, rounds=level - source
            )
        save_tensors(path, mask)
        return mask

    def _trial_mask(self, level: int, trial: int) -> Mask:
        return load_tensors(self.trial_layout(trial).mask(level))

    def trains(self, kind: str) -> bool:
        """Whether run `kind` is trained (a supermask is only evaluated)."""
        base, _, _ = parse_run_id(kind)
        return base == TICKET or bool(getattr(control(base), "TRAINS", True))

    def train_run(
        self,
        level: int,
        kind: str,
        *,
        metrics_path: Path | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Trains one run alone and writes it (its metrics to `metrics_path` if given, e.g. a
        worker's staging file); `should_stop` replaces the experiment's stop check."""
        plan = self.plan(level, kind)
        paths = {kind: metrics_path} if metrics_path is not None else {}
        if not self.trains(kind):
            return self._evaluate_only(plan, metrics_path)
        return self._train([plan], {kind}, paths, should_stop or self.should_stop)[0]

    def stacks_level(self, level: int, stack: bool | None = None) -> bool:
        """Whether the level's runs train as one stacked model (`lth_core.stacked.should_stack`).

        Depends only on the spec, the device type, torch's thread count and the level, never
        on which of its runs are done: a level interrupted half way is stacked again when it
        resumes. `stack=True` forces stacking where it is exact, False never stacks. The
        trials of a level stack together with its controls (each trial with its own data
        order); runs that are only evaluated (supermask) are never part of a stack."""
        from lth_core import stacked

        spec = self.spec
        members = len([k for k in self.runs_at_level(level) if self.trains(k)])
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
        kinds = self.runs_at_level(level)
        pending = [k for k in kinds if not self.is_run_done(level, k)]
        if not pending:
            return []
        if not self.stacks_level(level, stack):
            return [self.train_run(level, kind) for kind in pending]
        trained = [k for k in kinds if self.trains(k)]
        done = []
        for group in self.stack_groups(trained):
            plans = [self.plan(level, kind) for kind in group]
            write = {k for k in pending if k in group}
            if write:
                done += self._train(plans, write, {}, self.should_stop)
        evaluated = [self.train_run(level, k) for k in pending if k not in trained]
        return [*done, *evaluated]

    def stack_groups(self, kinds: Sequence[str]) -> list[list[str]]:
        """Which of a stacked level's runs train together. Runs of one trial share their
        batches; different trials each need their own (a (K, B, ...) batch). On a GPU one
        stack of everything pays; on a CPU a stack of trials with their own batches cost 4x
        one-by-one training (LeNet, 3 trials, 2 threads) where a stack sharing one batch
        saves time, so a CPU stacks each trial's runs on their own. A group of one trains
        alone. Depends only on the device type and the spec."""
        if self.device.type == "cuda" or self.spec.trials == 1:
            return [list(kinds)]
        by_trial: dict[int, list[str]] = {}
        for kind in kinds:
            by_trial.setdefault(parse_run_id(kind)[1], []).append(kind)
        return list(by_trial.values())

    def _train(
        self,
        plans: Sequence[RunPlan],
        write: Collection[str],
        metrics_paths: dict[str, Path],
        should_stop: Callable[[], bool] | None,
    ) -> list[dict[str, Any]]:
        """Trains the plans as one loop (stacked if more than one) and publishes those in
        `write`, in plan order. Plans of one training share their start iteration and schedule."""
        (start_iteration,) = {p.start_iteration for p in plans}
        (level,) = {p.level for p in plans}
        if len({p.training.model_dump_json() for p in plans}) != 1:
            raise ValueError("the runs of one training must share their schedule")
        training = plans[0].training
        early_bird = self._early_bird(level, [p.kind for p in plans])
        members = []
        kinds = tuple(p.kind for p in plans)
        for plan in plans:
            model = self._build(seed=None)
            model.load_state_dict(plan.start)
            members.append(
                Member(
                    model.to(self.device),
                    on_device(plan.mask, self.device),
                    plan.data_seed,
                    plan.augment_seed,
                    self._progress_hook(plan.level, plan.kind, kinds)
                    if plan.kind in write
                    else None,
                    plan.snapshot_at,
                )
            )
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            # Dropout draws from the global generator (stacks have no dropout: one seed).
            torch.manual_seed(plans[0].dropout_seed)
            results = train_members(
                members,
                self.splits,
                training,
                start_iteration=start_iteration,
                should_stop=should_stop,
                callbacks=[early_bird] if early_bird is not None else [],
            )
        if early_bird is not None:
            for result in results:
                result.metrics["mask_drawn_at"] = early_bird.drawn_at
        return [
            publish_run(
                self.layout,
                plan,
                result.metrics,
                member.model.state_dict(),
                snapshot=result.snapshot,
                metrics_path=metrics_paths.get(plan.kind),
                weights=self.trial_layout(plan.trial),
            )
            for plan, member, result in zip(plans, members, results, strict=True)
            if plan.kind in write
        ]

    def _evaluate_only(self, plan: RunPlan, metrics_path: Path | None) -> dict[str, Any]:
        """A run that is evaluated at its start weights under its mask, with no step taken."""
        import time

        started = time.perf_counter()
        model = self._build(seed=None)
        model.load_state_dict(plan.start)
        model.to(self.device)
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, m in plan.mask.items():
                params[name].mul_(m.to(device=self.device, dtype=params[name].dtype))
        splits = self.splits
        chunk = eval_chunk_size(model, int(splits.val_x[0].numel()))
        val_loss, val_acc = evaluate(model, splits.val_x, splits.val_y, chunk)
        _, test_acc = evaluate(model, splits.test_x, splits.test_y, chunk)
        point = {
            "iteration": plan.start_iteration,
            "train_loss": math.nan,
            "val_loss": float(val_loss),
            "val_accuracy": float(val_acc),
            "test_accuracy": float(test_acc),
        }
        metrics = summarize(
            [point],
            point,
            seconds=time.perf_counter() - started,
            iterations=plan.start_iteration,
        )
        return publish_run(
            self.layout,
            plan,
            metrics,
            model.state_dict(),
            metrics_path=metrics_path,
            weights=self.trial_layout(plan.trial),
        )

    def finish_level(self, level: int) -> dict[str, Any]:
        runs = {
            kind: load_json(self.layout.run_metrics(level, kind))
            for kind in self.runs_at_level(level)
        }
        masks = [self._trial_mask(level, t) for t in self.trials]
        extras: dict[str, Any] = {
            "weights": self._weights(masks[0]),
            "mask_distance": self._mask_distance(level, masks),
        }
        analysis = self.spec.analysis
        if analysis is not None and analysis.instability is not None:
            extras["instability"] = self.instability(level)
        summary = level_summary(
            level,
            runs,
            pruning.counts(masks[0]),
            report_iterations=self.spec.training.report_iterations,
            extras=extras,
        )
        summary.update(self._cheap_fields(level, runs))
        save_json(self.layout.summary(level), summary)
        summaries = self.summaries()
        spec_json = self.spec.model_dump(mode="json")
        # The rule's verdict over every level (lth_core.results); the ticket itself is
        # lth_core.verification's answer, which with `verify` asks the same rule about level 0
        # and the verification level only.
        decision = ticket_decision(summaries, self.spec.ticket_tolerance, self.spec.ticket_metric)
        ticket_level = final_ticket(spec_json, summaries)
        if ticket_level is not None:
            for trial in self.trials:
                self.export_ticket(ticket_level, self.trial_layout(trial).ticket, trial=trial)
        results: dict[str, Any] = {
            "spec": spec_json,
            "ticket_level": ticket_level,
            "levels": summaries,
            "ticket": decision,
        }
        results.update(self._cheap_results(spec_json, summaries, ticket_level))
        save_json(self.layout.results, results)
        return summary

    def _cheap_fields(self, level: int, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What a level adds for cheap tickets: its cost, where early-bird drew its mask,
        where patience stopped, whether it is the verification level."""
        out: dict[str, Any] = {"cost": cost.level_cost(runs)}
        ticket = runs[TICKET]
        if "mask_drawn_at" in ticket:
            out["mask_drawn_at"] = ticket["mask_drawn_at"]
        if "stopped_at" in ticket:
            out["stopped_at"] = ticket["stopped_at"]
        if level == self.spec.verify_level:
            out["verification"] = True
        return out

    def _cheap_results(
        self, spec_json: dict[str, Any], summaries: list[dict[str, Any]], ticket_level: int | None
    ) -> dict[str, Any]:
        """results.json's cost (so far and the estimate of the rest), time to the ticket, the
        rates target_weights chose, and the verification's verdict."""
        out: dict[str, Any] = {
            "cost": cost.experiment_cost(summaries, self.levels, self.runs_at_level),
            "time_to_ticket": cost.time_to_ticket(summaries, ticket_level),
        }
        if self.spec.pruning.target_weights is not None:
            out["pruning_rates"] = self.rates_used()
        if self.spec.verify_rule is not None:
            out["verified"] = verified(spec_json, summaries)
        return out

    def rates_used(self) -> dict[str, Any]:
        """The per-level rates the pruning uses (target_weights solved them)."""
        p = self.pruning
        if p.strategy == "global":
            return {"global_rate": p.global_rate}
        return {k: v for k, v in p.rates.model_dump().items() if v}

    def _effective_pruning(self) -> PruningSpec:
        """The spec's pruning, with rates solved for `target_weights` when it is set.

        Every kind's rate is scaled by one factor (layer-wise: the output layer stays at half
        the fc rate as in the paper's defaults; global: global_rate alone), bisected to the
        smallest factor whose exact rounded counts after `levels` rounds leave at most the
        target fraction of the prunable weights. Deterministic: a fixed number of steps.
        """
        spec = self.spec.pruning
        target = spec.target_weights
        if target is None:
            return spec
        from lth_core.strategies import strategy

        entry = strategy(spec.strategy)
        base = self._initial_mask()
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
            keep = entry.keep_counts(base, self.kinds, p, spec.levels)
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

    def _early_bird(self, level: int, kinds: Sequence[str]) -> EarlyBird | None:
        """The early-bird callback for the level's ticket run (None: not at this level, or
        the ticket is not among the runs trained)."""
        eb = self.spec.early_bird_at(level)
        if eb is None or TICKET not in kinds:
            return None
        if self.spec.pruning.schedule == "oneshot" and level > 0:
            return None  # one-shot masks all come from level 0's weights
        base = on_device(self.prepare_level(level), self.device)
        kinds_, p = self.kinds, self.pruning

        def would_be(weights: StateDict) -> Mask:
            return pruning.prune_level(weights, base, kinds_, p, rounds=1)

        return EarlyBird(would_be, eb.distance, eb.window, member=list(kinds).index(TICKET))

    def summaries(self) -> list[dict[str, Any]]:
        return [load_json(self.layout.summary(level)) for level in self.layout.finished_levels()]

    def export_ticket(self, level: int, path: Path, *, trial: int = 0) -> None:
        """Masks and the weights the ticket starts from, with the spec and metrics as metadata.

        `init/<name>` holds every state-dict entry unmasked (theta_0, or theta_k when rewinding);
        multiply the weights named in `mask/<name>` by their mask to get the ticket itself.
        """
        plan = self.plan(level, run_id(TICKET, trial))
        tensors = {f"mask/{n}": m for n, m in plan.mask.items()}
        tensors.update({f"init/{n}": t for n, t in plan.start.items()})
        metadata = {
            "format": TICKET_FORMAT,
            "level": str(level),
            "start_iteration": str(plan.start_iteration),
            "spec": self.spec.model_dump_json(),
            # The level's numbers; its cost (wall seconds) is the experiment's, not the ticket's.
            "metrics": json.dumps(
                {k: v for k, v in load_json(self.layout.summary(level)).items() if k != "cost"}
            ),
            # What a user needs to use the ticket in their own code (lth_core.tickets): the
            # registry's model name and the inputs' normalization, (x - mean) / std.
            "model": self.spec.model,
            "dataset": self.spec.dataset.name,
            "normalization": json.dumps(
                {"mean": list(self.splits.mean or ()), "std": list(self.splits.std or ())}
            ),
        }
        if trial:
            metadata["trial"] = str(trial)
        save_tensors(path, tensors, metadata)

    # ----------------------------------------------------------------- diagnostics

    def _weights(self, mask: Mask) -> dict[str, Any]:
        """Weights remaining: of the prunable weights (what `weights_remaining` counts), of
        all parameters (biases, batch norm and excluded layers included), and per layer."""
        pruned = sum(m.numel() - int(m.sum()) for m in mask.values())
        return {
            "of_prunable": pruning.fraction_remaining(mask),
            "of_all": (self._parameter_count - pruned) / self._parameter_count,
            "layers": {n: int(m.sum()) / m.numel() for n, m in mask.items()},
        }

    def _mask_distance(self, level: int, masks: Sequence[Mask]) -> dict[str, Any] | None:
        """Normalized Hamming distance to the previous level's mask, per layer and overall
        (mean over trials; each trial's overall distance under `trials`). None at level 0."""
        if level == 0:
            return None
        per_trial = [pruning.hamming(self._trial_mask(level - 1, t), masks[t]) for t in self.trials]
        n = len(per_trial)
        return {
            "to_level": level - 1,
            "overall": sum(d["overall"] for d in per_trial) / n,
            "layers": {
                name: sum(d["layers"][name] for d in per_trial) / n
                for name in per_trial[0]["layers"]
            },
            "trials": [d["overall"] for d in per_trial],
        }

    def instability(self, level: int) -> dict[str, Any]:
        """The level's error barrier (lth_core.instability), per trial, kept in the level's
        folder: two copies of each trial's ticket, trained from its network at iteration k
        with two different data orders, and the validation error on the line between them."""
        from lth_core.instability import barrier_of_copies

        path = self.layout.level_dir(level) / "instability.json"
        if path.is_file():
            return load_json(path)
        assert self.spec.analysis is not None and self.spec.analysis.instability is not None
        settings = self.spec.analysis.instability
        trials = []
        for trial in self.trials:
            plan = self.plan(level, run_id(TICKET, trial))
            seed = self.trial_seeds[trial]
            trials.append(
                barrier_of_copies(
                    build=lambda: self._build(seed=None).to(self.device),
                    plan=plan,
                    splits=self.splits,
                    device=self.device,
                    iteration=settings.iteration,
                    points=settings.points,
                    copy_seeds=(
                        derive_seed(seed, level, "instability", "a"),
                        derive_seed(seed, level, "instability", "b"),
                    ),
                )
            )
        barriers = [t["barrier"] for t in trials]
        result = {
            "iteration": settings.iteration,
            "points": settings.points,
            "measured_on": "validation",
            "barrier": sum(barriers) / len(barriers),
            "barrier_std": statistics.stdev(barriers) if len(barriers) > 1 else 0.0,
            "trials": trials,
        }
        save_json(path, result)
        return result

    # ----------------------------------------------------------------- internals

    def _with_init(self) -> bool:
        return self.spec.mask is not None and self.spec.mask.with_init

    def _source_init(self, template: StateDict) -> StateDict:
        """The weights the transferred mask's source trained from (Morcos et al. 2019): the
        `init/` entries of a ticket file, or the source experiment's theta_0 (theta_k when it
        rewound) beside its level's mask file."""
        if self.initial_mask is None:
            raise ValueError("mask.with_init needs the source's mask file")
        path = self.initial_mask.path
        given = load_tensors(path)
        weights = {k.removeprefix("init/"): v for k, v in given.items() if k.startswith("init/")}
        if not weights:
            root = path.parent.parent.parent  # <source>/levels/LLL/mask.safetensors
            source = Layout(root)
            mode = (
                load_json(source.spec).get("reset", {}).get("mode")
                if source.spec.is_file()
                else None
            )
            where = source.rewind_weights if mode == "rewind" else source.init_weights
            if not where.is_file():
                raise ValueError(
                    f"mask.with_init: {path} is neither a ticket file (with init/ weights) nor "
                    f"a level mask beside its experiment's {where.name}"
                )
            weights = load_tensors(where)
        missing = sorted(set(template) - set(weights))
        wrong = sorted(
            n for n in template if n in weights and weights[n].shape != template[n].shape
        )
        if missing or wrong:
            raise ValueError(
                f"mask.with_init: the source's weights do not fit {self.spec.model}: missing "
                f"{missing or 'nothing'}, other shapes {wrong or 'nothing'}"
            )
        return {n: weights[n].clone() for n in template}

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
        """The folder holds this experiment (same spec, same initial mask) or a new one."""
        wanted = self.spec.model_dump(mode="json")
        fresh = not self.layout.spec.is_file()
        if not fresh:
            stored = load_json(self.layout.spec)
            if stored != wanted and not _legacy_local_mask(stored, wanted, self.initial_mask):
                raise ValueError(
                    f"{self.layout.root} holds a different experiment; use a new output folder"
                )
        recorded = (
            load_json(self.layout.initial_mask) if self.layout.initial_mask.is_file() else None
        )
        # A folder written before masks were recorded: trust what it was started with.
        legacy = recorded is None and self.initial_mask is not None and not self._made_dense()
        if not fresh and not legacy:
            why = mismatch(recorded, self.initial_mask, self.layout.root)
            if why:
                raise ValueError(why)
        if fresh:
            save_json(self.layout.spec, wanted)
        if recorded is None and self.initial_mask is not None:
            save_json(self.layout.initial_mask, self.initial_mask.record())

    def _made_dense(self) -> bool:
        """Whether level 0 was prepared without a mask (its mask has nothing pruned)."""
        path = self.layout.mask(0)
        return path.is_file() and all(bool(m.all()) for m in load_tensors(path).values())

    def _load_or_save(
        self, path: Path, tensors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if path.is_file():
            return load_tensors(path)
        save_tensors(path, tensors)
        return {k: v.detach().clone() for k, v in tensors.items()}

    # RunContext (lth_core.controls): what a control may use.

    def seed_for(self, *parts: object) -> int:
        return derive_seed(self.spec.seed, *parts)

    def build(self, seed: int | None) -> PrunableModel:
        return self._build(seed)

    @property
    def theta0(self) -> StateDict:
        return self._theta0

    def prunable_weights(self) -> Collection[str]:
        return self.kinds

    def _initial_mask(self) -> Mask:
        shapes = {name: self._theta0[name].shape for name in self.kinds}
        if self.initial_mask is None:
            return pruning.dense_mask(shapes)
        from lth_core.preflight import fit_mask, read_mask_file

        given = read_mask_file(self.initial_mask.path, f"mask {self.initial_mask.path}")
        return fit_mask(given, shapes, self.spec.model, f"mask {self.initial_mask.path}")

    def _progress_hook(
        self, level: int, kind: str, kinds: tuple[str, ...] = ()
    ) -> Callable[[int, dict[str, float] | None], None] | None:
        if self.progress is None:
            return None
        report = self.progress
        total = self.spec.training.iterations

        def hook(iteration: int, record: dict[str, float] | None) -> None:
            report(ProgressEvent(level, kind, iteration, total, record, kinds))

        return hook


class TrialContext:
    """What a control of one trial and one draw may use (lth_core.controls.RunContext): that
    trial's theta_0 and seeds; draw r > 0 of a control gets seeds of its own. Trial 0's
    first draw sees exactly what the experiment itself gives (the seeds it always had)."""

    def __init__(self, experiment: Experiment, trial: int, repeat: int) -> None:
        self.experiment, self.trial, self.repeat = experiment, trial, repeat

    def seed_for(self, *parts: object) -> int:
        seed = self.experiment.trial_seeds[self.trial]
        return derive_seed(seed, *parts, *(("repeat", self.repeat) if self.repeat else ()))

    def build(self, seed: int | None) -> PrunableModel:
        return self.experiment.build(seed)

    @property
    def theta0(self) -> StateDict:
        return self.experiment._theta0s[self.trial]

    def prunable_weights(self) -> Collection[str]:
        return self.experiment.prunable_weights()


def _legacy_local_mask(
    stored: dict[str, Any], wanted: dict[str, Any], initial_mask: InitialMask | None
) -> bool:
    """A folder that `lth run --mask` wrote before mask sources were typed: its spec carries
    the placeholder source {"experiment_id": "local", "level": 0}, otherwise the same spec."""
    placeholder = {"experiment_id": "local", "level": 0}
    if initial_mask is None or initial_mask.reference is not None or wanted.get("mask") is not None:
        return False
    return stored.get("mask") == placeholder and {**stored, "mask": None} == wanted
