"""What a run starts from, decided in one place, and the one way a finished run is written.

A RunPlan is a pure function of (spec, level, kind) and the files earlier runs left: the
mask, the start weights, the iteration the schedule and the data resume at, the seeds, and
whether to keep a snapshot for rewinding. `publish_run` writes what a finished run leaves:
the ticket's trained weights (input to the next level's pruning), the rewind point if one
was taken, the dense run's weights at the instability analysis's iterations, and last the metrics file, whose presence marks the run finished. Where the
metrics go is the caller's: a worker stages a claimed control's metrics under a private key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lth_core import pruning
from lth_core.pruning import Mask, StateDict
from lth_core.runs import is_ticket, parse_run_id
from lth_core.spec import TrainingSpec
from lth_core.storage.files import put_json, put_tensors
from lth_core.storage.layout import KEYS, Keys
from lth_core.storage.store import ArtifactStore


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
    # Iterations whose weights the dense run keeps for the instability analysis (level 0's
    # ticket, first repeat, only): Keys.dense_weights(k).
    keep_at: tuple[int, ...] = ()
    # How a control found its own mask (pruning at initialization; None otherwise): its
    # record in levels/LLL/masks/<run>.json, whose scoring seconds count in the run's cost.
    mask_info: dict[str, Any] | None = None


def publish_run(
    store: ArtifactStore,
    plan: RunPlan,
    metrics: dict[str, Any],
    trained: StateDict,
    *,
    snapshot: StateDict | None = None,
    kept: dict[int, StateDict] | None = None,
    metrics_key: str | None = None,
) -> dict[str, Any]:
    """Writes a finished run (see the module docstring); returns its run record. The run's
    trial keeps its weights in its own folder (lth_core.storage.layout.Keys.of_trial)."""
    keys = Keys.of_trial(plan.trial)
    if is_ticket(plan.kind) and not parse_run_id(plan.kind)[2]:
        # The next level is pruned from the first repeat (the verification's further
        # repeats are for its error bars only).
        put_tensors(store, keys.trained_weights(plan.level), trained)
    if snapshot is not None:
        put_tensors(store, keys.rewind_weights, snapshot)
    for iteration, weights in sorted((kept or {}).items()):
        put_tensors(store, keys.dense_weights(iteration), weights)
    run = {
        "level": plan.level,
        "kind": plan.kind,
        "weights_remaining": pruning.fraction_remaining(plan.mask),
        "start_iteration": plan.start_iteration,
        **metrics,
    }
    if plan.mask_info is not None:
        # Scoring counts in what the run cost: its seconds (wall, as every run's) and, in the
        # deterministic cost record, the forward/backward passes it took.
        run["seconds"] = float(run.get("seconds", 0.0)) + float(plan.mask_info["seconds"])
        run["cost"] = {**run.get("cost", {}), "mask_passes": plan.mask_info["passes"]}
    # Last: its presence marks the run finished (a worker's staging key is published later).
    put_json(store, metrics_key or KEYS.run_metrics(plan.level, plan.kind), run)
    return run


def on_device(mask: Mask, device: torch.device) -> Mask:
    return {name: m.to(device) for name, m in mask.items()}
