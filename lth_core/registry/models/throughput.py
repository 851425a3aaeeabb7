"""A prior on training speed, to estimate what an experiment costs before anything has run.

Until a level has finished, the measured cost per run is unknown; a typo of 150000 for 1500
iterations used to be accepted with `remaining_estimate: null`. This prior turns a spec into
seconds from the model's size alone (torch-free, lth_core.registry.models.sizes): a training
step is about 6 x macs x batch floating-point operations, an evaluation 2 x macs per example,
done at an effective rate per device class, with a floor per step (kernel launches, the
optimizer) that dominates small models on a GPU. The rates are measured, not peak:
bench/results/speed.md on a 2-thread AMD EPYC (149 GFLOP/s matmul) ran LeNet-300-100 at 1.63x
and Conv-2 at 2.07x its FLOP floor, about 75 GFLOP/s in practice. The GPU figures are
deliberately rough (no bench has run on a GPU yet); an estimate from them says it is a prior,
and measured speeds replace it once the first level has finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lth_core.registry.models.sizes import model_size


@dataclass(frozen=True)
class DeviceClass:
    name: str
    flops: float  # effective floating-point operations per second, training small models
    step_floor: float  # seconds a training step takes at least, however small the model


CPU = DeviceClass("CPU", 75e9, 0.2e-3)
GPU = DeviceClass("GPU", 10e12, 0.5e-3)


@dataclass(frozen=True)
class Prior:
    seconds: float
    step_seconds: float
    device: DeviceClass

    def basis(self, model: str) -> str:
        """What the estimate rests on, said where it is shown."""
        return (
            f"estimated from {model}'s size at about {1 / self.step_seconds:,.0f} it/s on a "
            f"{self.device.name} worker; measured speeds replace it after the first level"
        )


def about(seconds: float) -> str:
    """A duration as an estimate reads: ``about 40 s``, ``about 3 min``, ``about 2 h 10 min``."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def training_seconds(spec: Any, iterations: int, runs: int, device: DeviceClass) -> Prior | None:
    """Seconds to train ``runs`` runs of ``iterations`` iterations in all (evaluations
    included) for a validated ExperimentSpec; None where the model's size is not known
    (a plugin's model, a dataset of unknown shape)."""
    shape, classes = spec.dataset.input_shape, spec.dataset.num_classes
    if shape is None or classes is None:
        return None
    size = model_size(spec.model, tuple(shape), int(classes))
    if size is None or not size.macs:
        return None
    batch = spec.training.batch_size
    step = max(device.step_floor, 6 * size.macs * batch / device.flops)
    evaluations = iterations // spec.training.eval_every + runs
    evaluated = spec.dataset.validation_size + _test_size(spec)
    evaluation = 2 * size.macs * evaluated / device.flops
    return Prior(iterations * step + evaluations * evaluation, step, device)


def _test_size(spec: Any) -> int:
    from lth_core.registry.datasets import DATASETS

    if spec.dataset.synthetic is not None:
        return int(spec.dataset.synthetic.test_size)
    return int(DATASETS[spec.dataset.name].test_size or 0)
