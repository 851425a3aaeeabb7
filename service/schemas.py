"""Response bodies: the published shape of everything the API returns.

Values written by the engine (level summaries, run curves) are typed leniently (optional
fields, extra keys ignored) so that a newer engine adding a field never breaks reading an
experiment; the spec is returned as stored, described by the ExperimentSpec schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from store.status import STATUS_VALUES

#: An experiment's status as the API publishes it: a plain string enum in the schema, its
#: values store.status's (the one definition), in their order.
StatusName = Literal[STATUS_VALUES]  # type: ignore[valid-type]

SpecJson = Annotated[
    dict[str, Any],
    WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/ExperimentSpec"}]}),
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RunSummary(_Lenient):
    """A run's headline numbers (accuracies are fractions in [0, 1])."""

    weights_remaining: float | None = Field(None, description="Fraction of prunable weights left.")
    early_stop_iteration: int | None = None
    early_stop_val_loss: float | None = None
    early_stop_test_accuracy: float | None = None
    final_test_accuracy: float | None = None


class LayerCount(_Lenient):
    remaining: int
    total: int


class KindCost(_Lenient):
    """What one kind of training cost: a run kind (ticket, a control) or a diagnostic's copies."""

    iterations: int = 0
    seconds: float = 0.0
    runs: int = 0


class LevelCost(_Lenient):
    """What a level trained: iterations and wall seconds, summed over its runs (the
    verification's repeats included) and its diagnostics' training (instability copies)."""

    iterations: int = 0
    seconds: float = 0.0
    runs: int = 0
    devices: list[str] = Field(default_factory=list, description="Device types the runs used.")
    threads: list[int] = Field(default_factory=list, description="Torch thread counts used.")
    kinds: dict[str, KindCost] = Field(
        default_factory=dict,
        description="The same sums by kind: ticket, each control, each diagnostic (instability).",
    )


class Stat(_Lenient):
    """One metric over a level's runs of one kind (trials; for controls trials x draws)."""

    mean: float | None = None
    std: float | None = Field(None, description="Sample standard deviation (0 for one run).")
    min: float | None = None
    max: float | None = None
    n: int = 0


class TrialRun(RunSummary):
    """One run of a level: which trial, which draw of its control, and its own numbers."""

    run: str = Field(description="Run id: kind[.t<trial>][.r<draw>].")
    trial: int = 0
    repeat: int = 0
    early_stop_val_accuracy: float | None = None
    final_val_accuracy: float | None = None
    early_stop_lower_bound: bool = Field(
        False,
        description="The minimum was at the run's last evaluation: its early stop is >= this.",
    )
    val_examples: int | None = None
    report: dict[str, dict[str, float | None]] | None = Field(
        None, description="Validation and test accuracy at each training.report_iterations."
    )


class WeightsRemaining(_Lenient):
    of_prunable: float | None = Field(None, description="Fraction of prunable weights left.")
    of_all: float | None = Field(
        None, description="Fraction of all parameters left (biases, batch norm, unpruned layers)."
    )
    layers: dict[str, float] = Field(default_factory=dict)


class MaskDistance(_Lenient):
    """Normalized Hamming distance to the previous level's mask (mean over trials)."""

    to_level: int
    overall: float
    layers: dict[str, float] = Field(default_factory=dict)
    trials: list[float] = Field(default_factory=list)


class LevelSummary(RunSummary):
    """One finished level: the ticket's numbers, each control's, and per-layer weight counts.

    With trials the top-level numbers (and each control's) are means over the runs; `stats`
    has mean, std, min and max of every metric per run kind and `runs` each run's own."""

    level: int
    controls: dict[str, RunSummary] = Field(default_factory=dict)
    layers: dict[str, LayerCount] = Field(default_factory=dict)
    cost: LevelCost | None = None
    mask_drawn_at: int | None = Field(
        None, description="Early-bird: the iteration at which the next level's mask was drawn."
    )
    stopped_at: int | None = Field(
        None, description="Patience: the iteration where the ticket's training stopped."
    )
    verification: bool = Field(
        False, description="Whether this is the verification level (with spec.verify: the last)."
    )
    early_stop_val_accuracy: float | None = Field(
        None, description="Validation accuracy at early stop: what the ticket rule compares."
    )
    final_val_accuracy: float | None = None
    trials: int = 1
    stats: dict[str, dict[str, Stat]] = Field(
        default_factory=dict, description="Per run kind and metric, over its runs."
    )
    runs: dict[str, list[TrialRun]] = Field(default_factory=dict)
    weights: WeightsRemaining | None = None
    mask_distance: MaskDistance | None = Field(None, description="Null at level 0.")
    instability: dict[str, Any] | None = Field(
        None, description="Error barrier along the linear path (analysis.instability)."
    )


class CostEstimate(BaseModel):
    runs: int
    iterations: int
    seconds: float
    basis: str | None = Field(
        None,
        description="What the estimate rests on: the measured cost per run of the finished "
        "levels, or (before any) a prior from the model's size and the queue's device class.",
    )


class Cost(BaseModel):
    """What the experiment has cost so far, and an estimate of the rest."""

    iterations: int = Field(
        description="Iterations trained by every finished level: its runs and its analyses."
    )
    seconds: float = Field(description="Wall seconds of those runs (a stack's share each).")
    levels: int = Field(description="Finished levels counted.")
    kinds: dict[str, KindCost] = Field(
        default_factory=dict,
        description="The same sums by kind: ticket, each control, each diagnostic (instability).",
    )
    remaining_estimate: CostEstimate | None = Field(
        None,
        description="An estimate of what is left: the mean cost per finished run times the "
        "runs still to train; before any level has finished, a prior from the model's size "
        "(null for a model of unknown size). `basis` says which.",
    )


class Comparison(_Lenient):
    """One comparison a verdict rests on (lth_core.results.verdicts), on validation data."""

    verdict: Literal["yes", "no", "inconclusive"]
    effect: float | None = Field(
        None, description="This level minus the other: accuracy as a fraction, or iterations."
    )
    interval: list[float | None] = Field(
        default_factory=list, description="[lo, hi] of the effect at `confidence`."
    )
    confidence: float = 0.95
    test: str = Field(description="The test used (paired over units, or over examples).")
    n: int = Field(0, description="Paired units (trials or repeats), or validation examples.")
    why: str
    required: bool = Field(True, description="Whether it counts toward the level's verdict.")


class LevelVerdict(_Lenient):
    """Whether a level matches the dense network as a winning ticket, and why."""

    level: int
    verdict: Literal["yes", "no", "inconclusive"] | None = Field(
        None,
        description="no: a required comparison is a decided no; yes: all are yes; null: "
        "level 0, the dense reference (never the ticket).",
    )
    qualifies: bool = Field(description="No decided 'no' (inconclusive does not break the run).")
    in_unbroken_run: bool
    comparisons: dict[str, Comparison] = Field(
        default_factory=dict,
        description="matches_dense_accuracy, stops_no_later, beats_<control>.",
    )
    reasons: list[str] = Field(default_factory=list)
    margin_vs_dense: float | None = None
    margins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per control: val accuracy and iteration margins."
    )


class TicketDecision(_Lenient):
    """How the winning ticket was chosen (validation data only) and each level's verdict."""

    level: int | None = Field(
        description="The ticket: always a pruned level; null when there is no winning ticket."
    )
    verdict: Literal["yes", "inconclusive"] | None = Field(
        None,
        description="yes: a winning ticket, every comparison yes; inconclusive: the candidate "
        "the data cannot decide; null: no ticket.",
    )
    reason: str = Field("", description="The decision in one sentence.")
    decided_by: Literal["rule", "verification"] = "rule"
    confidence: float = 0.95
    verification: LevelVerdict | None = Field(
        None, description="With spec.verify: the verification level's verdict (null before)."
    )
    names: str | None = Field(
        None,
        description="'pruned network' with reset.mode finetune or lr_rewind: not a winning "
        "ticket (no reset), a pruned network compared with the dense one.",
    )
    note: str | None = None
    rule: str
    metric: str
    tolerance: float
    levels: list[LevelVerdict] = Field(default_factory=list)


class Progress(BaseModel):
    """Where a run stands: the level being trained, which run of it, and its iteration."""

    level: int | None = Field(None, description="Level being trained (0 is the dense network).")
    levels: int = Field(description="Levels in the experiment: pruning.levels + 1.")
    levels_finished: int
    kind: str | None = Field(
        None,
        description="Run being trained: ticket or a control; a stacked level's members "
        "joined by + (ticket+random_reinit).",
    )
    kinds: list[str] | None = Field(None, description="Every run training now (a stack).")
    runs: list[str] | None = Field(
        None,
        description="Every run of the level being trained (run ids, in training order: "
        "trials and controls_at counted), so a client can tell how far into the level "
        "`kind` is.",
    )
    waiting: str | None = Field(
        None,
        description="Why a queued (or between-levels) experiment does not start: no running "
        "worker consumes its queue (says which queue, and which queues are consumed).",
    )
    iteration: int | None = None
    iterations: int | None = None
    metrics: dict[str, float] | None = Field(
        None, description="The latest evaluation (losses and accuracies) of the current run."
    )
    elapsed_seconds: float | None = Field(
        None, description="Since the experiment started (to its end once finished)."
    )
    iterations_per_second: float | None = Field(
        None, description="Training speed measured on the current run (running only)."
    )
    level_eta_seconds: float | None = Field(
        None, description="Estimated time until the current level finishes (running only)."
    )
    eta_seconds: float | None = Field(
        None,
        description="Estimated time until the experiment finishes, at the speed so far "
        "(running only; an upper bound when controls train on other workers).",
    )


class Ticket(RunSummary):
    """The ticket: the sparsest pruned level of the unbroken run of levels with no decided
    failure against the dense network and the controls, on validation data (see
    ticket_decision; never the dense network)."""

    verdict: Literal["yes", "inconclusive"] | None = Field(
        None, description="yes: a winning ticket; inconclusive: a candidate the data cannot decide."
    )
    early_stop_val_accuracy: float | None = Field(
        None, description="Validation accuracy at early stop (what the rule compares)."
    )
    level: int
    url: str = Field(description="Where to download it (safetensors).")


class ExperimentError(BaseModel):
    type: str
    message: str


class ExperimentOut(BaseModel):
    id: str
    name: str
    status: StatusName
    owner: str | None = None
    spec: SpecJson = Field(description="The spec with every default filled in.")
    progress: Progress
    levels: list[LevelSummary] = Field(description="Finished levels, in order.")
    ticket: Ticket | None = Field(None, description="Null until level 0 has finished.")
    ticket_decision: TicketDecision | None = Field(
        None, description="Why the ticket is the level it is; null until level 0 has finished."
    )
    error: ExperimentError | None = Field(None, description="Why it failed.")
    cost: Cost
    time_to_ticket: float | None = Field(
        None,
        description="Seconds from the experiment's start until the level of the ticket "
        "finally chosen was finished (null while there is no ticket).",
    )
    verified: bool | None = Field(
        None,
        description="With spec.verify: whether the final mask was verified a winning ticket, "
        "every comparison yes (false when it failed or was inconclusive: "
        "ticket_decision.verdict says which; null before the verification level has finished, "
        "or without verify).",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="On submit: paper defaults adapted to the spec's budget (e.g. lr_milestones "
        "scaled to a shorter training), each said in one line; the values are in `spec`. And "
        "an estimate above LTH_COST_NOTE_SECONDS of training, with its iterations and levels.",
    )
    cancel_requested: bool
    attempts: int
    queue: str = Field(
        description="The broker queue the experiment was sent to; re-sends go there too."
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ExperimentList(BaseModel):
    items: list[ExperimentOut]
    total: int = Field(description="Experiments matching the filter, over all pages.")
    limit: int
    offset: int


class CurvePoint(_Lenient):
    iteration: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None


class RunMetrics(RunSummary):
    kind: str
    iterations: int | None = None
    seconds: float | None = None
    curve: list[CurvePoint] = Field(default_factory=list)


class LevelMetrics(BaseModel):
    experiment_id: str
    level: int
    finished: bool = Field(description="True once every run of the level has finished.")
    runs: dict[str, RunMetrics] = Field(description="Finished runs by kind (ticket, controls).")


class Meta(BaseModel):
    """The API's vocabulary from its one definitions, so no client hard-codes it."""

    statuses: list[StatusName] = Field(description="Every experiment status, in lifecycle order.")
    active_statuses: list[StatusName] = Field(
        description="The statuses of an experiment that is not finished (queued, running): "
        "while in one of them its progress may still change."
    )
    run_id_pattern: str = Field(
        description="A run id as a regular expression without anchors (JavaScript and Python "
        "read it alike): kind[.t<trial>][.r<draw>], the keys of a level's runs and metrics."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, str]
    queues: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Each standard, configured or waited-in queue and the running workers "
        "that consume it (an empty list: nobody does).",
    )
    unconsumed: list[str] = Field(
        default_factory=list,
        description="Queues with experiments waiting in them that no running worker consumes.",
    )


class RegistryItem(BaseModel):
    """One model, dataset, control or pruning strategy the service knows."""

    name: str = Field(description="The name a spec uses.")
    source: Literal["built-in", "plugin"] = Field(
        description="built-in, or a plugin: an installed package's entry point."
    )
    package: str | None = Field(description="The plugin's package (null: built in).")
    version: str | None = Field(description="The plugin package's version (null: built in).")
    description: str = Field(description="One line, where the entry has one.")
    facts: dict[str, Any] = Field(
        description="What is known without running it: a model's paper_defaults, layer_kinds "
        "(stackable for a built-in); a dataset's input_shape, num_classes, train_size, "
        "test_size, normalization. A plugin has those its facts give (none: {})."
    )
    problem: str | None = Field(
        description="Why a plugin's facts cannot be used (its entry still listed); null: none."
    )


class RegistryOut(BaseModel):
    """Every name a spec may use, built-in or from an installed plugin (lth_core.registry)."""

    models: list[RegistryItem]
    datasets: list[RegistryItem]
    controls: list[RegistryItem]
    strategies: list[RegistryItem]
