"""Admission by size: what a spec would cost a worker's memory and the artifact store, estimated
at submit from the registry's torch-free facts (lth_core.registry.models.sizes), and refused
above the operator's limits before anything is queued.

Found accepted before: Conv-2 on synthetic 3x512x512 images (fc1 alone about 1.07e9 weights,
some 30 GB of activations at batch 200), VGG-19 at that size, LeNet x 50 trials x 31 levels
(2 GB of masks and weights for a toy). Limits depend on the device class of the queue: a spec
sent to ``lth.gpu`` may use one accelerator's memory; any other queue may land on a CPU worker
and gets the CPU limits. A plugin's model or dataset of unknown size is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from lth_core.registry.models import MODELS
from lth_core.registry.models.sizes import model_size
from lth_core.spec import ExperimentSpec
from service.errors import Unprocessable, detail
from store.broker import GPU_QUEUE
from store.settings import Settings

FLOAT_BYTES = 4
#: A run's metrics file: about this much per evaluation on its curve, plus the rest.
CURVE_POINT_BYTES, RUN_FILE_BYTES = 200, 2048


@dataclass(frozen=True)
class SizeEstimate:
    parameters: int
    activation_bytes: int  # one training step of every run trained at once
    artifact_bytes: int  # everything the experiment writes


def estimate(spec: ExperimentSpec) -> SizeEstimate | None:
    """The spec's size, or None where the model or the data's shape is not known here."""
    shape, classes = spec.dataset.input_shape, spec.dataset.num_classes
    if shape is None or classes is None:
        return None
    size = model_size(spec.model, tuple(shape), int(classes))  # type: ignore[arg-type]
    if size is None:
        return None
    together = max(len(spec.runs_at_level(level)) for level in range(spec.last_level + 1))
    stacked = spec.training.stack_runs != "never" and MODELS[spec.model].stacking is not None
    members = together if stacked else 1
    activations = size.activations * spec.training.batch_size * FLOAT_BYTES * members
    weights = size.parameters * FLOAT_BYTES
    levels, trials = spec.last_level + 1, spec.trials
    per_trial = weights * (2 if spec.reset.mode in ("rewind", "lr_rewind") else 1)
    per_level = size.prunable + weights  # the mask (one byte a weight) and trained weights
    runs = sum(len(spec.runs_at_level(level)) for level in range(levels))
    evaluations = spec.training.iterations // spec.training.eval_every + 1
    metrics = runs * (RUN_FILE_BYTES + evaluations * CURVE_POINT_BYTES)
    files = trials * (per_trial + levels * per_level) + per_level + metrics  # + the ticket
    return SizeEstimate(size.parameters, activations, files)


def is_gpu(queue: str) -> bool:
    return queue == GPU_QUEUE


def check_size(spec: ExperimentSpec, settings: Settings, queue: str) -> SizeEstimate | None:
    """Raises 422 ``limit_exceeded`` for a spec too large for the queue's device class;
    returns the estimate (None: not known)."""
    found = estimate(spec)
    if found is None:
        return None
    gpu = is_gpu(queue)
    device = "GPU" if gpu else "CPU"
    suffix = "GPU" if gpu else "CPU"
    limit = settings.max_parameters_gpu if gpu else settings.max_parameters_cpu
    if found.parameters > limit:
        raise _refused(
            ["model"],
            f"{spec.model} on inputs of shape {list(spec.dataset.input_shape or ())} has "
            f"{found.parameters:,} parameters; the limit on a {device} queue is {limit:,} "
            f"(LTH_MAX_PARAMETERS_{suffix}): use smaller inputs or another model",
        )
    limit = settings.max_activation_bytes_gpu if gpu else settings.max_activation_bytes_cpu
    if found.activation_bytes > limit:
        raise _refused(
            ["training", "batch_size"],
            f"one training step would keep about {_gb(found.activation_bytes)} of activations "
            f"(batch {spec.training.batch_size}, every run trained together counted); the "
            f"limit on a {device} queue is {_gb(limit)} (LTH_MAX_ACTIVATION_BYTES_{suffix}): "
            "use a smaller batch or smaller inputs"
            + ("" if gpu else ", or send it to the lth.gpu queue"),
        )
    if found.artifact_bytes > settings.max_experiment_bytes:
        raise _refused(
            ["pruning", "levels"],
            f"the experiment would write about {_gb(found.artifact_bytes)} of masks, weights "
            f"and metrics ({spec.pruning.levels + 1} levels x {spec.trials} trials); the limit "
            f"is {_gb(settings.max_experiment_bytes)} (LTH_MAX_EXPERIMENT_BYTES): use fewer "
            "levels or trials",
        )
    return found


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f} GB" if value >= 1e8 else f"{value / 1e6:.1f} MB"


def _refused(loc: list[str], message: str) -> Unprocessable:
    return Unprocessable(
        f"spec over a service limit: {message}",
        error_type="limit_exceeded",
        details=[detail(["body", *loc], message, "limit_exceeded")],
    )


def spec_bytes(spec: ExperimentSpec) -> int:
    """The artifact estimate of a stored spec (0 where not known)."""
    found = estimate(spec)
    return found.artifact_bytes if found is not None else 0
