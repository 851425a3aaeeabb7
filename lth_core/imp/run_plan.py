"""What a run starts from, decided in one place, and the one way a finished run is written.

A RunPlan is a pure function of (spec, level, kind) and the files earlier runs left: the
mask, the start weights, the iteration the schedule and the data resume at, the seeds, and
whether to keep a snapshot for rewinding. `publish_run` writes what a finished run leaves:
the ticket's trained weights (input to the next level's pruning), the rewind point if one
was taken, and last the metrics file, whose presence marks the run finished. Where the
metrics go is the caller's: a worker stages a claimed control's metrics under a private name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lth_core import pruning
from lth_core.storage.files import save_json, save_tensors
from lth_core.controls import TICKET, parse_run_id
from lth_core.storage.layout import Layout
from lth_core.pruning import Mask, StateDict
from lth_core.spec import TrainingSpec


@dataclass(frozen=True)
class RunPlan:
    level: int
    kind: str
    mask: Mask
    start: StateDict
    start_iteration: int
    data_seed: int
    augment_seed: int | None  # None: no augmentation
    dropout_seed: int
    snapshot_at: int | None  # the iteration whose weights rewinding resets to (level 0 ticket)
    trial: int
    training: TrainingSpec  # the schedule (the spec's, or fine-tuning's)


def publish_run(
    layout: Layout,
    plan: RunPlan,
    metrics: dict[str, Any],
    trained: StateDict,
    *,
    snapshot: StateDict | None = None,
    metrics_path: Path | None = None,
    weights: Layout | None = None,
) -> dict[str, Any]:
    """Writes a finished run (see the module docstring); returns its run record. `weights`:
    where the run's trial keeps its weights (default `layout`, trial 0's)."""
    files = weights or layout
    if parse_run_id(plan.kind)[0] == TICKET:
        save_tensors(files.trained_weights(plan.level), trained)
    if snapshot is not None:
        save_tensors(files.rewind_weights, snapshot)
    run = {
        "level": plan.level,
        "kind": plan.kind,
        "weights_remaining": pruning.fraction_remaining(plan.mask),
        "start_iteration": plan.start_iteration,
        **metrics,
    }
    save_json(metrics_path or layout.run_metrics(plan.level, plan.kind), run)  # last
    return run


def on_device(mask: Mask, device: torch.device) -> Mask:
    return {name: m.to(device) for name, m in mask.items()}
