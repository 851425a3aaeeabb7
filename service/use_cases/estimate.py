"""What a submit would cost, asked before submitting: `lth submit` asks here first, and asks
the user before sending a spec estimated above LTH_COST_NOTE_SECONDS (a typo of 150000 for
1500 iterations used to be accepted silently).

The spec goes through the submit's own checks (service.use_cases.submit.validated: the queue,
the limits, its size, its mask source), so whatever is refused here would be refused there,
with the same error; nothing is stored or enqueued. The owner's quotas and the duplicate
check are not looked at: they depend on the moment of the submit, which answers them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from lth_core.spec import parse_spec
from service.cost_estimate import prior
from service.schemas import CostEstimate, SpecJson
from service.use_cases.submit import submit_notes, validated
from store.api_keys import Principal
from store.settings import Settings


class SubmitEstimate(BaseModel):
    """What POST /experiments would make of this spec, without creating anything."""

    spec: SpecJson = Field(description="The spec with every default filled in.")
    queue: str = Field(description="The queue it would be sent to.")
    estimate: CostEstimate | None = Field(
        description="The whole experiment's training (every run of every level) estimated from "
        "the model's size on the queue's device class, `basis` saying so; null for a model or "
        "data of unknown size."
    )
    note_limit_seconds: float = Field(
        description="LTH_COST_NOTE_SECONDS: an estimate above it gets a note on submit."
    )
    above_note_limit: bool = Field(
        description="Whether the estimate is above the note limit (clients ask before "
        "submitting such a spec: `lth submit` does unless --yes)."
    )
    notes: list[str] = Field(
        default_factory=list,
        description="The notes the submit's answer would carry (adapted paper defaults, the "
        "cost note).",
    )


def estimate(
    session: Session, settings: Settings, principal: Principal, body: Any, queue_name: str
) -> SubmitEstimate:
    """The spec validated as a submit validates it, its cost estimate and the notes a submit
    would get. Raises the submit's errors for a spec it would refuse (422, 404/409 for an
    unusable mask)."""
    spec_json, _ = validated(session, settings, principal, body, queue_name)
    spec = parse_spec(spec_json)
    found = prior(spec, queue_name)
    limit = settings.cost_note_seconds
    return SubmitEstimate(
        spec=spec_json,
        queue=queue_name,
        estimate=CostEstimate.model_validate(found[0]) if found is not None else None,
        note_limit_seconds=limit,
        above_note_limit=found is not None and found[1].seconds > limit,
        notes=submit_notes(body, spec, queue_name, settings),
    )
