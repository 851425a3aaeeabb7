"""Checks a spec's ``mask`` (ticket transfer) against the experiment it names, at submit time.

A mask only fits a network of the same shapes: the same model, input shape and class count
(the output layer's mask depends on it). Catching a misfit here gives the user a clear answer
now instead of a failed job later. The source's level must be finished: its mask is final.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from lth_core.spec import ExperimentSpec, parse_spec
from service.errors import Conflict, NotFound, Unprocessable, detail
from store import artifacts, experiments, short_ids
from store.settings import Settings

_LOC = ("body", "mask")


def check_mask_source(
    session: Session, settings: Settings, spec: ExperimentSpec, owner: str | None
) -> dict[str, Any] | None:
    """Raises a 404/409/422 ApiError if the mask cannot be used; returns the normalized
    ``mask`` section (the source id in canonical form) to store, or None without a mask.
    """
    source = spec.mask
    if source is None:
        return None
    id_loc = [*_LOC, "experiment_id"]
    level_loc = [*_LOC, "level"]
    try:
        source_id = short_ids.resolve(session, source.experiment_id, owner=owner)
    except short_ids.AmbiguousId as exc:
        raise NotFound(
            f"mask.experiment_id: {exc}",
            error_type="ambiguous_id",
            details=[detail(id_loc, c.describe(), "ambiguous_id") for c in exc.candidates],
        ) from None
    except artifacts.InvalidId:
        source_id = None
    row = experiments.get(session, source_id, owner=owner) if source_id else None
    if row is None:
        raise NotFound(
            f"mask.experiment_id: no experiment {source.experiment_id!r} to take the mask from",
            error_type="mask_source_not_found",
            details=[detail(id_loc, "no such experiment", "not_found")],
        )
    try:
        source_spec = parse_spec(row.spec)
    except ValidationError:
        source_spec = None
    if source_spec is None:
        raise Unprocessable(
            f"mask.experiment_id: the spec of experiment {row.id} cannot be read by this version",
            error_type="mask_incompatible",
            details=[detail(id_loc, "unreadable source spec", "mask_incompatible")],
        )

    last = source_spec.pruning.levels
    if source.level > last:
        raise Unprocessable(
            f"mask.level: experiment {row.id} has levels 0..{last}, not {source.level}",
            error_type="mask_level_out_of_range",
            details=[detail(level_loc, f"must be between 0 and {last}", "out_of_range")],
        )
    _check_fit(spec, source_spec, row.id)

    finished = {lv.level for lv in row.levels}
    store = artifacts.experiment_store(settings, row.id)
    if source.level not in finished or not store.exists(artifacts.mask_key(source.level)):
        if row.is_finished:
            raise Unprocessable(
                f"mask.level: level {source.level} of experiment {row.id} never finished "
                f"(the experiment {row.status})",
                error_type="mask_level_unavailable",
                details=[detail(level_loc, "level never finished", "mask_level_unavailable")],
            )
        raise Conflict(
            f"mask.level: level {source.level} of experiment {row.id} has not finished yet; "
            "submit again once it has",
            error_type="mask_level_not_finished",
            details=[detail(level_loc, "level not finished yet", "mask_level_not_finished")],
        )
    return {"experiment_id": row.id, "level": source.level}


def _check_fit(spec: ExperimentSpec, source: ExperimentSpec, source_id: str) -> None:
    """Same model, input shape and class count, or the mask's tensors cannot fit."""
    checks = [
        ("model", spec.model, source.model),
        ("dataset.input_shape", spec.dataset.input_shape, source.dataset.input_shape),
        ("dataset.num_classes", spec.dataset.num_classes, source.dataset.num_classes),
    ]
    for what, mine, theirs in checks:
        if mine != theirs:
            loc = ["body", *what.split(".")] if what == "model" else ["body", "dataset"]
            raise Unprocessable(
                f"mask: the mask of experiment {source_id} is for {what} {_show(theirs)}, "
                f"this spec has {_show(mine)}; masks only fit the same shapes",
                error_type="mask_incompatible",
                details=[detail(loc, f"{what} differs from the mask's", "mask_incompatible")],
            )


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)
