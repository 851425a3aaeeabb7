"""The spec's sections (dataset, training, pruning, reset, controls, verification, analysis).

Pydantic and nothing heavier (the API validates without torch). Unknown keys are refused, so
a typo such as ``"learning_rte"`` is an error that names the field rather than a silently
ignored setting. The experiment as a whole is lth_core.spec.experiment_spec.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from lth_core.registry.datasets import DATASETS
from lth_core.spec.names import DatasetName, StrategyName
from lth_core.spec.numbers import SpecInt, bounded

# The allowed names come from the registries, plugins included (lth_core.spec.names).
LayerKind = Literal["conv", "fc", "output", "shortcut"]
LAYER_KINDS: tuple[str, ...] = ("conv", "fc", "output", "shortcut")

# Bounds that keep a spec within what one experiment can sensibly ask for. The service may
# apply tighter, configurable limits of its own; these only reject nonsense.
MAX_ITERATIONS = 10_000_000
MAX_LEVELS = 100
MAX_BATCH_SIZE = 65_536
MAX_TAGS = 20
MAX_VERIFY_REPEATS = 20
MAX_INSTABILITY_ITERATIONS = 20
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,39}$"
# Optional counts: their bounds inside the union (lth_core.spec.numbers.bounded says why).
AtLeastOne = bounded(ge=1)
FinetuneIterations = bounded(ge=1, le=MAX_ITERATIONS)


class _Strict(BaseModel):
    """Every section of the spec: unknown keys are refused, and values are never coerced
    (``"0.01"`` is not a number, ``true`` is not a count, ``1`` is not a boolean), so what a
    user wrote is what runs. A count written ``2000.0`` is the whole number 2000, as JSON
    Schema's ``integer`` says (every count is a lth_core.spec.numbers.SpecInt). A field added to any section inherits both rules; errors are
    worded for people by lth_core.spec.errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SyntheticSpec(_Strict):
    """A generated, learnable classification problem for tests and quick checks."""

    # A JSON array is a tuple here (strict mode alone would want a Python tuple); its
    # entries stay the spec's whole numbers (lth_core.spec.numbers).
    input_shape: tuple[SpecInt, SpecInt, SpecInt] = Field((1, 28, 28), strict=False)
    num_classes: SpecInt = Field(10, ge=2, le=1000)
    train_size: SpecInt = Field(2000, ge=2, le=1_000_000)
    test_size: SpecInt = Field(500, ge=1, le=1_000_000)
    noise: float = Field(1.0, ge=0.0, le=100.0)

    @field_validator("input_shape")
    @classmethod
    def _positive_shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(d < 1 or d > 512 for d in v):
            raise ValueError("every dimension of input_shape must be between 1 and 512")
        return v


class DatasetSpec(_Strict):
    name: DatasetName
    validation_size: SpecInt = Field(
        5000, ge=1, description="Examples held out of the training set for early stopping."
    )
    train_subset: AtLeastOne | None = Field(
        None, description="Cap on training examples (after the validation split)."
    )
    augment: bool = Field(False, description="Random flips and 4-pixel pad-and-crop (CIFAR).")
    root: str | None = Field(
        None, description="Where the files are (or are downloaded to); default: standard places."
    )
    synthetic: SyntheticSpec | None = None

    @model_validator(mode="after")
    def _synthetic_only_for_synthetic(self) -> DatasetSpec:
        if self.name == "synthetic":
            if self.synthetic is None:
                self.synthetic = SyntheticSpec()
            if self.validation_size >= self.synthetic.train_size:
                raise ValueError(
                    "validation_size must be smaller than synthetic.train_size "
                    f"({self.validation_size} >= {self.synthetic.train_size})"
                )
        elif self.synthetic is not None:
            raise ValueError("'synthetic' settings apply only to dataset name 'synthetic'")
        elif self.validation_size >= (DATASETS[self.name].train_size or float("inf")):
            raise ValueError(
                f"validation_size must be smaller than the {DATASETS[self.name].train_size} "
                f"training examples of {self.name} ({self.validation_size} is not)"
            )
        return self

    @property
    def training_examples(self) -> int | None:
        """Examples left to train on after the validation split and ``train_subset`` (None: a
        plugin's dataset that does not state its size)."""
        total = self.synthetic.train_size if self.synthetic else DATASETS[self.name].train_size
        if total is None:
            return None
        left = total - self.validation_size
        return left if self.train_subset is None else min(left, self.train_subset)

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """None: a plugin's dataset that does not say (known once it is loaded)."""
        if self.synthetic is not None:
            return self.synthetic.input_shape
        return DATASETS[self.name].input_shape

    @property
    def num_classes(self) -> int | None:
        """None: a plugin's dataset that does not say (known once it is loaded)."""
        if self.synthetic is not None:
            return self.synthetic.num_classes
        return DATASETS[self.name].num_classes


class TrainingSpec(_Strict):
    optimizer: Literal["adam", "sgd"]
    learning_rate: float = Field(gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    batch_size: SpecInt = Field(ge=1, le=MAX_BATCH_SIZE)
    iterations: SpecInt = Field(ge=1, le=MAX_ITERATIONS)
    warmup_iterations: SpecInt = Field(0, ge=0, description="Linear learning-rate warmup from 0.")
    lr_milestones: list[SpecInt] = Field(
        default_factory=list, description="Iterations at which the learning rate is multiplied."
    )
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0)
    eval_every: SpecInt = Field(
        100, ge=1, description="Evaluate on validation and test this often."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before each hidden fc layer.")
    # --- science (issue 11): accuracy recorded at fixed iterations (the deep networks)
    report_iterations: list[SpecInt] = Field(
        default_factory=list,
        exclude_if=lambda v: not v,
        description="Iterations at which to report validation and test accuracy (VGG-19 at "
        "30K/60K/112K, ResNet at 10K/20K/30K in the paper); each on the evaluation grid (a "
        "multiple of eval_every, or the last iteration). ticket_metric 'final' uses the last.",
    )
    stack_runs: Literal["auto", "never"] = Field(
        "auto",
        description=(
            "auto: train a level's ticket and controls as one stacked model where that is exact "
            "and measured to pay on the device (LeNet on GPU and on a CPU with two or more "
            "torch threads, Conv-2/4/6 on GPU); the "
            "level then runs on one worker. Stacked runs equal one-by-one runs to float "
            "tolerance, not bit for bit; either way the same spec gives the same bits on the "
            "same device and thread count. never: one run at a time, controls spread over workers."
        ),
    )
    patience: AtLeastOne | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="Stop a run this many evaluations after its last validation-loss "
        "improvement (off by default: the paper trains the full budget). The early-stop "
        "iteration is still the argmin over the evaluations made.",
    )
    checkpoint_every: AtLeastOne | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="Checkpoint a run in training every this many iterations (a multiple of "
        "eval_every: checkpoints are taken at evaluations), besides every "
        "LTH_CHECKPOINT_SECONDS of training; a run interrupted resumes from its latest "
        "checkpoint, on any host, with the bits of an uninterrupted run.",
    )
    test_eval: Literal["curve", "early_stop"] = Field(
        "curve",
        exclude_if=lambda v: v == "curve",
        description="curve: evaluate the test set at every evaluation (the full test curve). "
        "early_stop: keep the weights of each new validation minimum in memory and evaluate "
        "the test set once at the end, on them (the same number for a fraction of the cost).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSpec:
        if self.eval_every > self.iterations:
            raise ValueError(
                f"eval_every ({self.eval_every}) must not exceed iterations ({self.iterations})"
            )
        if self.warmup_iterations > self.iterations:
            raise ValueError(
                f"warmup_iterations ({self.warmup_iterations}) must not exceed "
                f"iterations ({self.iterations})"
            )
        ms = self.lr_milestones
        outside = [m for m in ms if m <= 0 or m >= self.iterations]
        if outside:
            raise ValueError(
                f"lr_milestones {outside} lie outside the training; every entry must lie "
                f"strictly between 0 and iterations ({self.iterations})"
            )
        if any(b <= a for a, b in itertools.pairwise(ms)):
            raise ValueError("lr_milestones must be strictly increasing")
        reports = self.report_iterations
        if any(b <= a for a, b in itertools.pairwise(reports)):
            raise ValueError("report_iterations must be strictly increasing")
        off_grid = [
            r
            for r in reports
            if r < 1 or r > self.iterations or (r % self.eval_every and r != self.iterations)
        ]
        if off_grid:
            raise ValueError(
                f"report_iterations {off_grid} are not evaluated: each must be a multiple of "
                f"eval_every ({self.eval_every}) between 1 and iterations ({self.iterations})"
            )
        every = self.checkpoint_every
        if every is not None and every % self.eval_every:
            raise ValueError(
                f"checkpoint_every ({every}) must be a multiple of eval_every "
                f"({self.eval_every}): checkpoints are taken at evaluations"
            )
        if self.momentum and self.optimizer != "sgd":
            raise ValueError("momentum applies to optimizer 'sgd' only (Adam has its own betas)")
        return self


class PruningRates(_Strict):
    """Fraction of the *remaining* weights removed per level, by layer kind (layer-wise)."""

    conv: float = Field(0.0, ge=0.0, lt=1.0)
    fc: float = Field(0.0, ge=0.0, lt=1.0)
    output: float = Field(0.0, ge=0.0, lt=1.0)
    shortcut: float = Field(0.0, ge=0.0, lt=1.0)


class EarlyBirdSpec(_Strict):
    """Early-bird masks (You et al. 2020): draw the mask once consecutive would-be masks agree."""

    distance: float = Field(
        0.1, gt=0.0, le=1.0, description="Normalized Hamming distance below which masks agree."
    )
    window: SpecInt = Field(
        5, ge=1, le=1000, description="Consecutive evaluations the distance must stay below."
    )


class PruningSpec(_Strict):
    levels: SpecInt = Field(
        20, ge=0, le=MAX_LEVELS, description="Pruning rounds after the dense level 0."
    )
    strategy: StrategyName
    schedule: Literal["iterative", "oneshot"] = "iterative"
    rates: PruningRates = Field(default_factory=PruningRates)
    global_rate: float = Field(
        0.2, ge=0.0, lt=1.0, description="Fraction pruned per level across all layers (global)."
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Layer kinds (conv, fc, output, shortcut) or weight names never pruned.",
    )
    target_weights: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        exclude_if=lambda v: v is None,
        description="Fraction of prunable weights to reach after `levels` rounds: the per-level "
        "rates are solved for it (every kind's rate scaled together, so the output layer stays "
        "at half the fc rate as in the paper; global: global_rate). Results record the rates used.",
    )
    early_bird: EarlyBirdSpec | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="End each level's training once its would-be mask has settled (early-bird "
        "tickets); the level's ticket run then stops where the mask was drawn.",
    )

    @field_validator("exclude")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or len(name) > 200 or not all(c.isalnum() or c in "._" for c in name):
                raise ValueError(
                    f"exclude entry {name!r} is neither a layer kind nor a weight name"
                )
        return v


class ResetSpec(_Strict):
    mode: Literal["init", "rewind", "lr_rewind", "finetune"] = Field(
        "init",
        description="init: back to theta_0 (winning ticket); rewind: to iteration k of the dense "
        "run (weights and schedule); lr_rewind: keep the trained weights and replay the whole "
        "learning-rate schedule with a fresh optimizer (Renda et al. 2020); finetune: keep the "
        "trained weights and continue at the schedule's final learning rate for "
        "finetune_iterations (the classic pruning baseline). lr_rewind and finetune start a "
        "one-shot level from the dense trained network.",
    )
    rewind_iteration: SpecInt = Field(0, ge=0)
    finetune_iterations: FinetuneIterations | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="mode finetune: iterations of fine-tuning per pruned level "
        "(default: training.iterations).",
    )

    @model_validator(mode="after")
    def _rewind_needs_k(self) -> ResetSpec:
        if self.mode != "rewind" and self.rewind_iteration:
            raise ValueError("rewind_iteration applies to mode 'rewind' only")
        if self.mode != "finetune" and self.finetune_iterations is not None:
            raise ValueError("finetune_iterations applies to mode 'finetune' only")
        return self


class ControlsAt(_Strict):
    """Which pruned levels run the controls (given explicitly)."""

    levels: list[SpecInt] = Field(max_length=MAX_LEVELS + 1)

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if any(level < 0 or level > MAX_LEVELS + 1 for level in v):
            raise ValueError(f"controls_at.levels entries must lie in 0..{MAX_LEVELS + 1}")
        return sorted(set(v))


class VerifySpec(_Strict):
    """How the verification level (and the dense reference) train: patience, or the budget,
    each `repeats` times with its own data order, so the verdict has error bars."""

    patience: AtLeastOne | None = Field(
        None,
        description="Evaluations without improvement before stopping; null: full budget. At "
        "least training.patience (the reference is never cut shorter than the cheap levels).",
    )
    repeats: SpecInt = Field(
        3,
        ge=1,
        le=MAX_VERIFY_REPEATS,
        exclude_if=lambda v: v == 3,
        description="Times the verification level and the dense reference (level 0) are "
        "trained, each time with another data order (run ids ticket.r<u>, and the controls' "
        "draw u at the verification level share it), so every verification verdict is over "
        "`repeats` paired runs.",
    )


class MaskSource(_Strict):
    """Train from a mask found by an earlier experiment (ticket transfer)."""

    experiment_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    level: SpecInt = Field(ge=0, le=MAX_LEVELS)
    with_init: bool = Field(
        False,
        exclude_if=lambda v: not v,
        description="Train the mask from the source's own initialization (its theta_0, or "
        "theta_k when it rewound) instead of this experiment's (Morcos et al. 2019).",
    )


# --- science (issue 11): trials, ticket metric and analyses -------------------------------


class InstabilitySpec(_Strict):
    """Linear mode connectivity (Frankle et al. 2020): per level and rewinding iteration k, two
    copies of the *dense* run's weights at k under the level's mask, trained to the end with
    different data orders; the error barrier on the straight line between them."""

    iterations: list[SpecInt] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=MAX_INSTABILITY_ITERATIONS,
        description="The rewinding iterations k to sweep (e.g. [0, 100, 500, 1000, 2000]); "
        "level 0 keeps its weights at each.",
    )
    points: SpecInt = Field(30, ge=3, le=101, description="Evenly spaced points on the path.")
    threshold: float = Field(
        0.02,
        gt=0.0,
        le=1.0,
        description="Error barrier (a fraction) below which a network counts as stable; the "
        "smallest such k is the rewinding iteration suggested (Frankle et al.: about 2%).",
    )

    @model_validator(mode="before")
    @classmethod
    def _single_iteration(cls, data: object) -> object:
        """The earlier form {"iteration": k} is the sweep [k]."""
        if isinstance(data, dict) and "iteration" in data and "iterations" not in data:
            data = {**data, "iterations": [data["iteration"]]}
            del data["iteration"]
        return data

    @field_validator("iterations")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(k < 0 for k in v):
            raise ValueError("every rewinding iteration must be 0 or more")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("iterations must be strictly increasing, e.g. [0, 100, 500]")
        return v


class AnalysisSpec(_Strict):
    instability: InstabilitySpec | None = None
