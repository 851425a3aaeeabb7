"""The cost estimate an experiment shows before its first level has finished.

lth_core.results.cost estimates the rest from the measured cost per run, which exists only
once a level is done; until then the experiment's ``remaining_estimate`` comes from the prior
(lth_core.results.prior: the model's size, the spec's iterations, runs and evaluations) on
the queue's device class, and says so in ``basis``. A plugin's model, or data of unknown
shape, has no prior: the estimate stays null until a level is measured.
"""

from __future__ import annotations

from typing import Any

from lth_core.registry.models.throughput import CPU, GPU, DeviceClass, Prior
from lth_core.results import prior as spec_prior
from lth_core.spec import ExperimentSpec
from store.broker import GPU_QUEUE

MEASURED = "measured: the mean cost per run of the finished levels, times the runs left"


def device_class(queue: str | None) -> DeviceClass:
    """The device class the prior assumes for a queue: GPU for the GPU queue, CPU otherwise
    (the default queue may be served by either; CPU is the cautious guess)."""
    return GPU if queue == GPU_QUEUE else CPU


def prior(spec: ExperimentSpec, queue: str | None) -> tuple[dict[str, Any], Prior] | None:
    """The whole experiment's estimate from the prior on the queue's device class (``runs``,
    ``iterations``, ``seconds``, ``basis``) and the prior itself, or None where the model's
    size is not known."""
    return spec_prior.spec_prior(spec, device_class(queue))


def cost_note(spec: ExperimentSpec, queue: str | None, limit_seconds: float) -> str | None:
    """A note for an experiment estimated above ``limit_seconds`` of training on the queue's
    device class (None below, or without a prior)."""
    return spec_prior.cost_note(spec, device_class(queue), limit_seconds)


def with_estimate(cost: dict[str, Any], spec: ExperimentSpec, queue: str | None) -> dict[str, Any]:
    """``cost`` (lth_core.results.cost's) with its estimate labelled, or from the prior when
    nothing has been measured yet."""
    measured = cost.get("remaining_estimate")
    if measured is not None:
        return {**cost, "remaining_estimate": {**measured, "basis": MEASURED}}
    if cost.get("levels"):
        return cost
    found = prior(spec, queue)
    return cost if found is None else {**cost, "remaining_estimate": found[0]}
