"""Small specs and helpers shared by the engine tests (tiny synthetic runs take seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lth_core.experiment import Experiment
from lth_core.spec import ExperimentSpec, _merge, parse_spec

TINY: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": {
        "name": "synthetic",
        "validation_size": 200,
        "synthetic": {"train_size": 1000, "test_size": 200},
    },
    # One run at a time: these tests look at each run (tests/test_stacked.py covers stacking).
    "training": {"iterations": 60, "eval_every": 20, "stack_runs": "never"},
    "pruning": {"levels": 2},
    "controls": [],
}


def tiny_spec(**sections: Any) -> ExperimentSpec:
    return parse_spec(_merge(TINY, sections))


def run_tiny(out: Path, **sections: Any) -> Experiment:
    experiment = Experiment(tiny_spec(**sections), out, device="cpu")
    experiment.run()
    return experiment
