"""The experiment spec: the one description of an IMP experiment that every part of the system
shares — which runs each level has, which level verifies, each trial's seed.

Pydantic and nothing heavier, so the API validates and echoes a spec (every paper default
filled in) without importing torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lth_core.runs import TICKET, run_id
from lth_core.spec import control_options, short_budget
from lth_core.spec.control_options import validate as _validate_control_options
from lth_core.spec.names import ControlName, ModelName, plugin_packages
from lth_core.spec.numbers import SpecInt
from lth_core.spec.paper_defaults import merge, paper_defaults_of
from lth_core.spec.sections import (
    MAX_TAGS,
    TAG_PATTERN,
    AnalysisSpec,
    ControlsAt,
    DatasetSpec,
    EarlyBirdSpec,
    MaskSource,
    PruningSpec,
    ResetSpec,
    TrainingSpec,
    VerifySpec,
    _Strict,
)
from lth_core.spec.seeds import derive_seed

_merge = merge  # the name tests and the digest recipe import


def verification_level(verify: object, levels: int) -> int | None:
    """The level that verifies: the final one, pruning.levels, when `verify` is set (a
    spec's or a stored spec's raw value); None without verification."""
    return None if verify is False or verify is None else int(levels)


MAX_TRIALS = 50
MAX_CONTROL_REPEATS = 20


class ExperimentSpec(_Strict):
    name: str = Field("", max_length=200)
    model: ModelName
    dataset: DatasetSpec
    training: TrainingSpec
    pruning: PruningSpec
    reset: ResetSpec = Field(default_factory=ResetSpec)
    controls: list[ControlName] = Field(default_factory=lambda: ["random_reinit"])
    seed: SpecInt = Field(0, ge=0, le=2**62)
    ticket_tolerance: float = Field(
        0.0, ge=0.0, le=1.0, description="Accuracy (0-1) a ticket may lose against the dense net."
    )
    mask: MaskSource | None = None
    controls_at: Literal["every_level", "ticket_level"] | ControlsAt = Field(
        "every_level",
        exclude_if=lambda v: v == "every_level",
        description="Where controls run: every_level (the paper), ticket_level (only the last "
        'level, pruning.levels: with verify, the verification level), or {"levels": [..]}. '
        "Controls show a ticket is special; finding it does not need them.",
    )
    verify: bool | VerifySpec = Field(
        False,
        exclude_if=lambda v: v is False,
        description="Train the final level's mask (level pruning.levels) from the ticket's start "
        "(theta_0 or theta_k), with the controls, under the paper's rule instead of the cheap "
        'one: the full budget (true) or {"patience": P} (an honest margin over '
        "training.patience), never early-bird; level 0, the reference, trains under the same "
        "rule. The cheap levels only propose the mask; only a verified final level is called "
        "the winning ticket.",
    )
    # --- science (issue 11). Each new field is left out of dumps at its default, so a
    # spec.json written before it existed still matches on resume.
    trials: SpecInt = Field(
        1,
        ge=1,
        le=MAX_TRIALS,
        exclude_if=lambda v: v == 1,
        description="Independent IMP runs (own init and data order each); results give mean, "
        "std, min and max over them. Trial 0 uses `seed`, trial t a seed derived from it.",
    )
    seeds: list[SpecInt] | None = Field(
        None,
        min_length=1,
        max_length=MAX_TRIALS,
        exclude_if=lambda v: v is None,
        description="The seed of each trial, instead of `trials` (then `seed` is not used).",
    )
    control_repeats: SpecInt = Field(
        1,
        ge=1,
        le=MAX_CONTROL_REPEATS,
        exclude_if=lambda v: v == 1,
        description="Independent draws of each control per level and trial (the paper: 3).",
    )
    control_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, exclude_if=lambda v: not v, description=control_options.HELP
    )
    ticket_metric: Literal["early_stop", "final"] = Field(
        "early_stop",
        exclude_if=lambda v: v == "early_stop",
        description="early_stop: a ticket matches the dense validation accuracy at early stop "
        "in at most its early-stop iteration (the paper); final: matches the validation "
        "accuracy at the last report_iteration (or the end), for the deep networks.",
    )
    analysis: AnalysisSpec | None = Field(None, exclude_if=lambda v: v is None)
    # Left out of dumps when empty, so the spec.json of a run written before tags existed still
    # matches on resume (tags never change what is trained). The cheap-ticket fields above
    # (patience, test_eval, target_weights, early_bird, controls_at, verify) are likewise left
    # out at their defaults: a spec that does not use them dumps exactly as before.
    tags: list[str] = Field(
        default_factory=list,
        exclude_if=lambda tags: not tags,
        max_length=MAX_TAGS,
        description="Labels to find and group experiments by (e.g. lenet-lr, part2); they do "
        "not change what is trained. Up to 20, each 1-40 letters, digits or _ . : + -.",
    )

    plugins: dict[str, str] = Field(
        default_factory=dict,
        exclude_if=lambda v: not v,
        description="Filled in by validation (what you write here is replaced): the plugin "
        "package (package==version) behind each name the spec uses that is not built in, "
        "keyed model:NAME, dataset:NAME, control:NAME or strategy:NAME. A worker without "
        "that package fails the experiment naming it.",
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        import re

        for tag in v:
            if not re.fullmatch(TAG_PATTERN, tag):
                raise ValueError(
                    f"tag {tag[:50]!r} must be 1-40 characters: letters, digits and _ . : + - "
                    "(starting with a letter or digit)"
                )
        return list(dict.fromkeys(v))  # repeats once, in the order given

    _control_options = field_validator("control_options")(_validate_control_options)

    @model_validator(mode="before")
    @classmethod
    def _fill_paper_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = paper_defaults_of(data.get("model"))
        if defaults is None:
            # An unknown model: the field validator reports the bad name, and nothing the
            # paper's defaults would settle is reported beside it. A plugin's model without
            # defaults: the spec gives its sections (errors.py says so where they are missing).
            return short_budget.adapt(data, data)
        return short_budget.adapt(merge(defaults, data), data)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        if not self.name:
            self.name = f"{self.model}-{self.dataset.name}"
        self.plugins = plugin_packages(
            self.model, self.dataset.name, self.controls, self.pruning.strategy
        )
        if self.training.dropout and "model:" + self.model in self.plugins:
            raise ValueError(
                f"training.dropout applies to the built-in models; plugin model {self.model!r} "
                "builds its own layers (put dropout in its build)"
            )
        if len(set(self.controls)) != len(self.controls):
            raise ValueError("controls must not repeat")
        control_options.check_applies(self)
        if self.pruning.early_bird is not None and self.reset.mode == "rewind":
            raise ValueError(
                "pruning.early_bird with reset.mode 'rewind': the rewind point is taken from the "
                "dense run, which early-bird may stop first; use reset.mode 'init'"
            )
        if self.pruning.target_weights is not None and self.pruning.levels == 0:
            raise ValueError("pruning.target_weights needs pruning.levels >= 1 to get there")
        if self.verify is not False and self.pruning.levels == 0:
            raise ValueError("verify needs pruning.levels >= 1: level 0 is the dense network")
        if self.verify is not False and self.reset.mode in ("finetune", "lr_rewind"):
            raise ValueError(
                f"verify retrains from theta_0 or theta_k; reset.mode {self.reset.mode!r} has "
                "neither"
            )
        if self.seeds is not None:
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError("seeds must not repeat")
            if any(s < 0 or s > 2**62 for s in self.seeds):
                raise ValueError("every seed must be between 0 and 2**62")
            if self.trials not in (1, len(self.seeds)):
                raise ValueError(
                    f"trials ({self.trials}) and seeds ({len(self.seeds)} of them) disagree; "
                    "give one of them"
                )
            self.trials = len(self.seeds)
        instability = self.analysis.instability if self.analysis else None
        if instability is not None and instability.iterations[-1] >= self.training.iterations:
            raise ValueError(
                f"analysis.instability.iterations ({instability.iterations[-1]}) must be below "
                f"training.iterations ({self.training.iterations})"
            )
        check_verification(self)
        if self.reset.rewind_iteration >= self.training.iterations:
            raise ValueError(
                f"reset.rewind_iteration ({self.reset.rewind_iteration}) must be below "
                f"training.iterations ({self.training.iterations})"
            )
        examples = self.dataset.training_examples
        if examples is not None and self.training.batch_size > examples:
            raise ValueError(
                f"training.batch_size ({self.training.batch_size}) is larger than the {examples} "
                "training example(s) left after the validation split"
                + (" and train_subset" if self.dataset.train_subset is not None else "")
                + f"; use batch_size {examples} or less, or more training data"
            )
        return self

    @property
    def run_kinds(self) -> list[str]:
        """A pruned level's runs: every trial's ticket, then each control's draws."""
        return paired_runs(self, 1)

    @property
    def verify_rule(self) -> VerifySpec | None:
        """How verification trains (None: no verification)."""
        rule = VerifySpec() if self.verify is True else self.verify
        return rule or None

    @property
    def verify_level(self) -> int | None:
        """The verification level when `verify` is set: the final level, pruning.levels (its
        mask trained cheaply first would add nothing the verification does not redo)."""
        return verification_level(self.verify, self.pruning.levels)

    def is_reference_level(self, level: int) -> bool:
        """Levels trained under the verification rule: the verification level and the dense
        level 0 it is compared with (no patience beyond the rule's, no early-bird)."""
        return self.verify_rule is not None and level in (0, self.verify_level)

    def training_at(self, level: int) -> TrainingSpec:
        """The training settings of one level: the spec's, or the verification rule's."""
        rule = self.verify_rule
        if rule is None or not self.is_reference_level(level):
            return self.training
        return self.training.model_copy(update={"patience": rule.patience})

    def early_bird_at(self, level: int) -> EarlyBirdSpec | None:
        """Early-bird applies where a pruned level's ticket gives the next level's mask: not
        the last level, no reference level, never the dense level 0 (what every ticket is
        compared with is not cut short). It ends the ticket's run only (a stack's controls
        train on, lth_core.train.loop)."""
        eb = self.pruning.early_bird
        skip = level == 0 or level >= self.pruning.levels or self.is_reference_level(level)
        return None if eb is None or skip else eb

    @property
    def last_level(self) -> int:
        """The experiment's last level (the verification level with `verify`)."""
        return self.pruning.levels

    def controls_run_at(self, level: int) -> bool:
        """Whether `controls_at` asks for the controls at this level (the verification level
        always has them: it is what they establish)."""
        if level == self.verify_level:
            return True
        at = self.controls_at
        if at == "every_level":
            return True
        if at == "ticket_level":
            return level == self.last_level
        return level in at.levels

    def runs_at_level(self, level: int, *, from_mask: bool | None = None) -> list[str]:
        """Controls need a mask to control for: a level 0 that starts dense has only the
        tickets. `from_mask`: whether level 0 starts from a given mask (a service reference
        or a local file, lth_core.imp.mask_source); by default whether the spec names one.
        `controls_at` leaves the controls out of the levels it does not name."""
        from_mask = self.mask is not None if from_mask is None else from_mask
        controls = not ((level == 0 and not from_mask) or not self.controls_run_at(level))
        return paired_runs(self, repeats_at(self, level), controls=controls)

    def trial_seed(self, trial: int) -> int:
        """Trial 0's seed is `seed` (so one trial is the experiment it always was)."""
        if self.seeds is not None:
            return self.seeds[trial]
        if trial == 0:
            return self.seed
        return derive_seed(self.seed, "trial", trial, bits=62)


def check_verification(spec: ExperimentSpec) -> None:
    """What makes a verification (and a level chosen without one) mean something."""
    if spec.controls_at == "ticket_level" and spec.verify is False:
        raise ValueError(
            "controls_at 'ticket_level' needs verify: without it the ticket may be chosen at "
            "a level that never ran its controls; add verify, or use controls_at "
            "'every_level'"
        )
    rule = spec.verify_rule
    if rule is None:
        return
    if "random_reinit" not in spec.controls:
        raise ValueError(
            "verify needs 'random_reinit' in controls: a verified ticket must beat its "
            f"randomly reinitialized copy (controls are {spec.controls})"
        )
    cheap = spec.training.patience
    if cheap is not None and (rule.patience is not None and rule.patience < cheap):
        raise ValueError(
            f"verify.patience ({rule.patience}) must be at least training.patience "
            f"({cheap}): the verification and its dense reference are never cut shorter "
            "than the cheap levels"
        )


def repeats_at(spec: ExperimentSpec, level: int) -> int:
    """Paired units per trial: verify.repeats at the reference levels, 1 elsewhere."""
    rule = spec.verify_rule
    return rule.repeats if rule is not None and spec.is_reference_level(level) else 1


def data_unit(spec: ExperimentSpec, level: int, repeat: int) -> int:
    """The data order of draw `repeat`: its unit's at a reference level, else the trial's."""
    return repeat if repeat < repeats_at(spec, level) else 0


def paired_runs(spec: ExperimentSpec, units: int, *, controls: bool = True) -> list[str]:
    """Tickets and control draws with `units` paired units per trial (the verification's
    repeats: unit u is ticket.r<u> and each repeatable control's draw u, which share
    unit u's data order; a control drawn more often keeps its further draws)."""
    tickets = [run_id(TICKET, t, u) for t in range(spec.trials) for u in range(units)]
    if not controls:
        return tickets
    return [*tickets, *control_options.control_runs(spec, max(spec.control_repeats, units))]


def parse_spec(data: dict[str, Any]) -> ExperimentSpec:
    """The one entry point for turning user JSON into a spec; raises pydantic.ValidationError."""
    return ExperimentSpec.model_validate(data)
