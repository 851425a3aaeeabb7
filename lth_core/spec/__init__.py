"""The spec: what a user asks for, validated once, torch-free.

`sections` (dataset, training, pruning, ...), `experiment_spec` (the whole experiment: its
levels, runs and seeds), `paper_defaults` and `short_budget` (what fills in what the user
left out), `errors` (every validation error worded for people), `seeds`.
"""

from lth_core.spec.experiment_spec import (
    MAX_CONTROL_REPEATS,
    MAX_TRIALS,
    ExperimentSpec,
    _merge,
    parse_spec,
)
from lth_core.spec.names import ControlName, ModelName
from lth_core.spec.paper_defaults import MODEL_NAMES
from lth_core.spec.sections import (
    LAYER_KINDS,
    TAG_PATTERN,
    AnalysisSpec,
    ControlsAt,
    DatasetSpec,
    EarlyBirdSpec,
    InstabilitySpec,
    MaskSource,
    PruningRates,
    PruningSpec,
    ResetSpec,
    SyntheticSpec,
    TrainingSpec,
    VerifySpec,
)

__all__ = [
    "LAYER_KINDS",
    "MAX_CONTROL_REPEATS",
    "MAX_TRIALS",
    "MODEL_NAMES",
    "TAG_PATTERN",
    "AnalysisSpec",
    "ControlName",
    "ControlsAt",
    "DatasetSpec",
    "EarlyBirdSpec",
    "ExperimentSpec",
    "InstabilitySpec",
    "MaskSource",
    "ModelName",
    "PruningRates",
    "PruningSpec",
    "ResetSpec",
    "SyntheticSpec",
    "TrainingSpec",
    "VerifySpec",
    "_merge",
    "parse_spec",
]
