"""Where a mask or ticket file came from, in its own safetensors metadata (written here only).

A downloaded `mask.safetensors` used to say nothing about itself: loaded into the wrong model
it failed with "missing convs.0.weight", and a week later nobody knew which experiment, level
or trial it was. Every mask and ticket file now carries, as string metadata: this format's
version, the file's kind (`mask` or `ticket`), the registry `model` and `dataset`, the service's
`experiment_id` (absent for a local `lth run`), `level`, `trial`, the ticket `run_id` whose
trained weights it was pruned from (the one it starts, for a ticket), `weights_remaining`, the
`spec_sha256` of the canonical spec and the `lth_version` that wrote it. Readers
(`lth run --mask`, `load_ticket`) use it to say what does not fit before any tensor is compared.
Tensors are unchanged: the metadata adds no bits to what is trained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from lth_core.runs import TICKET, run_id

PROVENANCE_FORMAT = "lth-provenance-v1"
#: The metadata keys this module writes (a file may carry others: `spec`, `metrics`, ...).
FIELDS = (
    "provenance_format",
    "kind",
    "model",
    "dataset",
    "experiment_id",
    "level",
    "trial",
    "run_level",
    "run_id",
    "weights_remaining",
    "spec_sha256",
    "lth_version",
)


class MaskMismatch(ValueError):
    """A mask or ticket file made for another model (or input shape) than the one given."""


@cache
def lth_version() -> str:
    """The installed package's version (``unknown`` when run from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lth")
    except PackageNotFoundError:
        return "unknown"


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """The sha-256 of the spec as canonical JSON (sorted keys, no spaces): equal for equal
    specs however they were written."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def stamp(
    spec: Mapping[str, Any],
    *,
    kind: str,
    level: int,
    trial: int,
    weights_remaining: float | None,
    experiment_id: str | None,
    source_level: int | None = None,
) -> dict[str, str]:
    """The provenance metadata of one file. ``spec``: the experiment's spec as JSON;
    ``source_level``: the level whose trained ticket the mask was pruned from (None: level 0's
    mask, made not pruned); a ticket names its own level's ticket run (`run_level`,
    `run_id`: where the run's metrics and weights are, `levels/LLL/runs/<run_id>`)."""
    meta = {
        "provenance_format": PROVENANCE_FORMAT,
        "kind": kind,
        "model": str(spec.get("model")),
        "dataset": str((spec.get("dataset") or {}).get("name")),
        "level": str(level),
        "trial": str(trial),
        "spec_sha256": spec_sha256(spec),
        "lth_version": lth_version(),
    }
    if experiment_id:
        meta["experiment_id"] = experiment_id
    run_level = level if kind == "ticket" else source_level
    if run_level is not None:
        meta["run_level"], meta["run_id"] = str(run_level), run_id(TICKET, trial)
    if weights_remaining is not None:
        meta["weights_remaining"] = f"{weights_remaining:.6g}"
    return meta


def fraction_kept(masks: Mapping[str, Any]) -> float:
    """Weights remaining of the masked weights (tensors with ``sum``/``numel``)."""
    total = sum(int(m.numel()) for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


def describe(meta: Mapping[str, str]) -> str:
    """``lenet_300_100's mask (level 3, trial 0, 21.0% of weights, experiment d668295f)``; a
    file without provenance is ``a mask file without provenance``."""
    model = meta.get("model")
    if not model:
        return "a mask file without provenance"
    parts = []
    if "level" in meta:
        parts.append(f"level {meta['level']}")
    if meta.get("trial", "0") != "0":
        parts.append(f"trial {meta['trial']}")
    if "weights_remaining" in meta:
        parts.append(f"{100 * float(meta['weights_remaining']):.1f}% of weights")
    if meta.get("experiment_id"):
        parts.append(f"experiment {meta['experiment_id'][:8]}")
    elif meta.get("dataset"):
        parts.append(f"trained on {meta['dataset']}")
    kind = meta.get("kind") or ("ticket" if meta.get("format") else "mask")
    return f"{model}'s {kind}" + (f" ({', '.join(parts)})" if parts else "")


def check_model(meta: Mapping[str, str], model: str | None, label: str) -> None:
    """Raises MaskMismatch when the file says it was made for another model than ``model``
    ("--mask m.safetensors: this is lenet_300_100's mask (level 3, ...), your spec's model is
    conv2"). A file without provenance, or no model to compare with, passes: its tensors'
    names and shapes are checked next."""
    theirs = meta.get("model")
    if not theirs or not model or theirs == model:
        return
    raise MaskMismatch(
        f"{label}: this is {describe(meta)}, your spec's model is {model}; a mask only fits "
        "the model it was made for"
    )
