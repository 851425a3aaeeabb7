"""Submitting an experiment: validate the spec, store it queued, hand its id to the workers.

Kept out of the route so that the route only reads the request (body, headers, query) and
writes the answer's headers. The order of the steps is the point: the owner's lock
(store.experiments.lock_owner) serializes one owner's submits, so two at once cannot both pass
the active limit, and the id goes to the broker only once the row is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from lth_core.spec import ExperimentSpec, parse_spec, short_budget
from service.consumers import CONSUMERS, check_queue, waiting_note
from service.cost_estimate import cost_note
from service.errors import ApiError, Conflict, Unprocessable, detail, invalid_spec
from service.mask_reuse import check_mask_source
from service.presenters import experiment_out
from service.quotas import check_active_limit, check_storage_quota
from service.schemas import ExperimentOut
from service.spec_limits import check_raw_limits, check_spec_limits
from service.spec_size import SizeEstimate, check_size
from store import experiments, queue
from store.api_keys import Principal
from store.settings import Settings


@dataclass(frozen=True)
class Submitted:
    """The experiment as the answer shows it, and whether this request created it (False: an
    Idempotency-Key replay of an earlier submit)."""

    experiment: ExperimentOut
    created: bool


def submit(
    session: Session,
    settings: Settings,
    principal: Principal,
    body: Any,
    *,
    idempotency_key: str | None,
    queue_name: str,
    again: bool = False,
) -> Submitted:
    """Validates the spec, stores a queued experiment, then hands its id to the workers.

    Raises the API's errors (422 for a spec that is not one, 404/409/422 for an unusable
    mask, 422 for a spec over the limits (its size included) or the owner's storage quota,
    429 over the active limit, 409 ``duplicate_spec`` for a spec the owner already has queued,
    running or succeeded unless ``again``)."""
    spec_json, size = validated(session, settings, principal, body, queue_name)
    owner = principal.owner
    experiments.lock_owner(session, owner)
    if not (again or settings.allow_duplicate_specs):
        _refuse_duplicate(session, spec_json, owner, idempotency_key)
    try:
        experiment, created = experiments.create(
            session, spec_json, owner=owner, idempotency_key=idempotency_key, queue=queue_name
        )
    except experiments.IdempotencyConflict as exc:
        raise Unprocessable(
            f"Idempotency-Key already used for experiment {exc.existing.id} with a different "
            "spec; use a new key for a new experiment",
            error_type="idempotency_key_reused",
            details=[detail(["header", "Idempotency-Key"], "reused", "idempotency_key_reused")],
        ) from None
    if created:
        experiment.artifact_bytes = size.artifact_bytes if size is not None else None
        try:
            check_active_limit(session, settings, owner)
            check_storage_quota(session, settings, owner, experiment.artifact_bytes or 0)
        except ApiError:
            session.rollback()
            raise
    session.commit()
    if created:
        queue.enqueue(experiment.id, settings, experiment.queue)
    note = waiting_note(experiment.status, experiment.queue, CONSUMERS.get(session, settings))
    out = experiment_out(experiment, note)
    out.notes = submit_notes(body, parse_spec(experiment.spec), experiment.queue, settings)
    return Submitted(out, created)


def submit_notes(body: Any, spec: ExperimentSpec, queue: str, settings: Settings) -> list[str]:
    """The notes a submit's answer carries (and POST /experiments/estimate foretells): the
    paper defaults adapted to a short budget, and a cost estimate above the note limit."""
    notes = short_budget.notes(body)
    costly = cost_note(spec, queue, settings.cost_note_seconds)
    if costly is not None:
        notes.append(costly)
    return notes


def _refuse_duplicate(
    session: Session, spec: dict[str, Any], owner: str | None, idempotency_key: str | None
) -> None:
    """409 when the owner already has this spec queued, running or succeeded (a retry with
    its Idempotency-Key is a replay, not a duplicate): results are deterministic, so a second
    copy only costs. Under the owner's lock, so two identical submits at once make one."""
    if idempotency_key is not None and experiments.find_by_idempotency_key(
        session, owner, idempotency_key
    ):
        return
    existing = experiments.find_duplicate(session, spec, owner)
    if existing is None:
        return
    session.rollback()
    raise Conflict(
        f"experiment {existing.id[:8]} ({existing.name}, {existing.status}) already has this "
        "exact spec, and the same spec gives the same results; follow it with "
        f"`lth status {existing.id[:8]}`, or submit again on purpose with ?again=true "
        "(`lth submit --again`)",
        error_type="duplicate_spec",
        details=[detail(["body"], f"same spec as experiment {existing.id}", "duplicate_spec")],
    )


def validated(
    session: Session, settings: Settings, principal: Principal, body: Any, queue: str
) -> tuple[dict[str, Any], SizeEstimate | None]:
    """The spec to store for ``queue`` (which must exist): parsed (defaults filled in), within
    the limits (its size for the queue's device class included), its mask source checked and
    normalized; and its size."""
    check_queue(session, settings, queue)
    if not isinstance(body, dict):
        raise Unprocessable(
            "the body must be a JSON object (the experiment spec)",
            error_type="invalid_spec",
            details=[detail(["body"], "Input should be an object", "dict_type")],
        )
    check_raw_limits(body, settings)
    try:
        spec = parse_spec(body)
    except ValidationError as exc:
        raise invalid_spec(exc) from None
    check_spec_limits(spec, settings)
    size = check_size(spec, settings, queue)
    spec_json = spec.model_dump(mode="json")
    mask = check_mask_source(session, settings, spec, principal.visible_owner)
    if mask is not None:
        spec_json["mask"] = mask
    return spec_json, size
