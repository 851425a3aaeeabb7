"""Checks a local run's inputs before anything is written, so a mistake costs no folder.

`lth run` used to write `spec.json`, `init.safetensors` and level 0's mask and only then find
that CIFAR-10 could not be downloaded, or print a 40-line traceback for a `--mask` file that
is missing or not safetensors. Here the data is loaded (and handed to the experiment, so it
is loaded once), and every input file is opened and checked against the model, first; a
problem is an InputError whose message names the input and what would be right.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lth_core.nn.data import DatasetUnavailable, Splits, load_splits
from lth_core.spec import ExperimentSpec
from lth_core.storage import provenance


class InputError(ValueError):
    """A mistake in what the user gave (a file, the data); the message is for them."""


def read_mask_file(
    path: Path, label: str | None = None, *, model: str | None = None
) -> dict[str, torch.Tensor]:
    """The masks in a level's mask file or a ticket (its `mask/<name>` entries); `label`
    names the input in messages (default: ``--mask PATH``). With `model`, a file whose
    provenance names another model is refused saying whose mask it is."""
    from safetensors import SafetensorError

    from lth_core.storage.ticket_file import read_ticket

    label = label or f"--mask {path}"
    if not path.exists():
        raise InputError(f"{label}: no such file")
    if not path.is_file():
        raise InputError(f"{label}: not a file")
    try:
        found = read_ticket(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{label}: not a safetensors mask file ({exc}); give a level's "
            "mask.safetensors or a ticket.safetensors"
        ) from None
    try:
        provenance.check_model(found.metadata, model, label)
    except provenance.MaskMismatch as exc:
        raise InputError(str(exc)) from None
    if not found.masks:
        raise InputError(f"{label}: holds no masks")
    return found.masks


def fit_mask(
    given: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size], model: str, source: str
) -> dict[str, torch.Tensor]:
    """The given masks as the model's bool masks, or an InputError saying what does not fit."""
    missing = sorted(set(shapes) - set(given))
    extra = sorted(set(given) - set(shapes))
    if missing or extra:
        raise InputError(
            f"{source}: the mask does not fit {model}: missing {missing or 'nothing'}, "
            f"unexpected {extra or 'nothing'}"
        )
    for name, shape in shapes.items():
        if given[name].shape != shape:
            raise InputError(
                f"{source}: the mask for {name} has shape {list(given[name].shape)}, "
                f"{model} needs {list(shape)}"
            )
    return {name: given[name].to(torch.bool) for name in shapes}


def check(spec: ExperimentSpec, mask: Path | None) -> Splits:
    """Every input of a local run, checked; returns the loaded data for the experiment."""
    from lth_core import pruning
    from lth_core.nn.models import build_model, weight_kinds

    if spec.mask is not None and mask is None:
        raise InputError(
            "spec.mask names an experiment of the service; to run it locally, pass the mask "
            "file itself (lth run --mask FILE)"
        )
    dataset = spec.dataset
    # A plugin's dataset that does not state its shape is loaded first to know it.
    splits = _load(spec) if dataset.input_shape is None or dataset.num_classes is None else None
    if mask is not None:
        given = read_mask_file(mask, model=spec.model)
        shape = dataset.input_shape or splits.input_shape  # type: ignore[union-attr]
        classes = dataset.num_classes or splits.num_classes  # type: ignore[union-attr]
        template = build_model(spec.model, shape, classes)
        kinds = pruning.prunable_kinds(weight_kinds(template), spec.pruning.exclude)
        state = template.state_dict()
        fit_mask(given, {n: state[n].shape for n in kinds}, spec.model, f"--mask {mask}")
    return splits if splits is not None else _load(spec)


def _load(spec: ExperimentSpec) -> Splits:
    try:
        return load_splits(spec.dataset, spec.seed)
    except DatasetUnavailable as exc:
        raise InputError(str(exc)) from None
    except ValueError as exc:  # e.g. validation_size larger than the dataset; a plugin's error
        raise InputError(f"dataset: {exc}") from None


__all__ = ["InputError", "check", "fit_mask", "read_mask_file"]
