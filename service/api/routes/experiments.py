"""Submitting, reading, listing, cancelling and deleting experiments."""

from __future__ import annotations

import difflib
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import WithJsonSchema

from lth_core.registry.models import MODELS
from lth_core.spec import TAG_PATTERN
from service.api.deps import JsonBodyDep, ReadSessionDep, SessionDep, SettingsDep
from service.api.ids import ExperimentIdDep
from service.api.strict_query import INTEGER_DIGITS, reject_unknown_query
from service.auth import CredentialsDep, OwnerDep, PrincipalDep, get_principal
from service.consumers import CONSUMERS
from service.errors import Conflict, Unprocessable, detail, error_responses
from service.events import LAST_EVENT_ID_PATTERN, SSE_EVENT, event_stream
from service.presenters import experiment_out
from service.reads import authorized_read, experiment_response, list_response, not_found
from service.schemas import ExperimentList, ExperimentOut, StatusName
from service.use_cases.estimate import SubmitEstimate, estimate
from service.use_cases.submit import submit
from store import artifacts, experiments
from store.broker import DEFAULT_QUEUE
from store.models import Status
from store.status import stands

#: A broker queue name: what Celery's ``--queues`` accepts without quoting.
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"

# Every route needs a caller, resolved before the id or body is even looked at.
router = APIRouter(
    prefix="/experiments",
    tags=["experiments"],
    dependencies=[Depends(get_principal), Depends(reject_unknown_query)],
)

# The hot reads resolve the caller themselves, inside their one thread hop (service.reads).
read_router = APIRouter(
    prefix="/experiments", tags=["experiments"], dependencies=[Depends(reject_unknown_query)]
)

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "description": "An experiment spec. Only `model` is required: the paper's settings "
        "for that model fill in everything left out.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpecInput"}}
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExperimentOut,
    summary="Submit an experiment",
    responses={
        201: {
            "description": "Queued (or, with a reused Idempotency-Key, the experiment that key "
            "created).",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 404, 409, 413, 422, 429, 503),
    },
    openapi_extra=_SPEC_BODY,
)
def submit_experiment(
    body: JsonBodyDep,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Retrying a POST with the same key returns the first experiment "
            "instead of creating another; the same key with a different spec is refused.",
        ),
    ] = None,
    queue_name: Annotated[
        str,
        Query(
            alias="queue",
            pattern=QUEUE_PATTERN,
            description="The broker queue to send it to: `lth` (any worker), `lth.gpu`, "
            "`lth.cpu`, or a custom queue some worker consumes (`lth worker --queues`). Kept "
            "with the experiment: its next levels and any re-send go there too.",
        ),
    ] = DEFAULT_QUEUE,
    again: Annotated[
        bool,
        Query(
            description="Submit even if an experiment of exactly this spec is already "
            "queued, running or succeeded (otherwise 409 duplicate_spec names it)."
        ),
    ] = False,
) -> ExperimentOut:
    """Validates the spec, stores a queued experiment, then hands its id to the workers."""
    # The logic is service.use_cases.submit's; the route says where it is and if it replayed.
    submitted = submit(
        session,
        settings,
        principal,
        body,
        idempotency_key=idempotency_key,
        queue_name=queue_name,
        again=again,
    )
    if not submitted.created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/experiments/{submitted.experiment.id}"
    return submitted.experiment


@router.post(
    "/estimate",
    response_model=SubmitEstimate,
    summary="Estimate a submit without submitting",
    responses={
        200: {"description": "What POST /experiments would make of the spec; nothing created."},
        **error_responses(401, 404, 409, 413, 422, 503),
    },
    openapi_extra=_SPEC_BODY,
)
def estimate_experiment(
    body: JsonBodyDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    queue_name: Annotated[
        str,
        Query(
            alias="queue",
            pattern=QUEUE_PATTERN,
            description="The queue the submit would use; its device class sets the estimate.",
        ),
    ] = DEFAULT_QUEUE,
) -> SubmitEstimate:
    """Validates the spec as a submit would and estimates its training from the model's size:
    `lth submit` asks here first, and asks before sending a spec estimated above
    LTH_COST_NOTE_SECONDS."""
    return estimate(session, settings, principal, body, queue_name)


IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="The ETag of the copy the client holds: if it is still current the "
        "answer is 304 with no body.",
    ),
]

_CONDITIONAL = {
    "headers": {
        "ETag": {
            "description": "Changes whenever anything in the body changes; send it back as "
            "If-None-Match.",
            "schema": {"type": "string"},
        }
    }
}
_NOT_MODIFIED = {304: {"description": "Not modified: If-None-Match names the current ETag."}}


@read_router.get(
    "",
    response_model=ExperimentList,
    summary="List experiments, newest first",
    responses={200: _CONDITIONAL, **_NOT_MODIFIED, **error_responses(401, 422, 503)},
)
async def list_experiments(
    request: Request,
    settings: SettingsDep,
    credentials: CredentialsDep,
    status_filter: Annotated[
        StatusName | None, Query(alias="status", description="Only experiments in this state.")
    ] = None,
    tag: Annotated[
        str | None,
        Query(pattern=TAG_PATTERN, description="Only experiments whose spec's tags include this."),
    ] = None,
    name: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Only names containing this (any case)."),
    ] = None,
    model: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only experiments of this model (a built-in's or an installed "
            "plugin's name; GET /registry lists them).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size."), INTEGER_DIGITS] = 50,
    offset: Annotated[
        int, Query(ge=0, le=10_000_000, description="Items to skip."), INTEGER_DIGITS
    ] = 0,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Read in one thread with one connection (service.reads); 304 when the page is unchanged."""
    return await authorized_read(
        request,
        settings,
        credentials,
        lambda connection, principal: (
            _check_model_filter(model)
            or list_response(
                connection,
                owner=principal.visible_owner,
                status=status_filter,
                tag=tag,
                name=name,
                model=model,
                limit=limit,
                offset=offset,
                if_none_match=if_none_match,
                consumers=CONSUMERS.get(connection, settings),
            )
        ),
    )


@read_router.get(
    "/{experiment_id}",
    response_model=ExperimentOut,
    summary="Get an experiment: status, progress, finished levels, ticket",
    responses={200: _CONDITIONAL, **_NOT_MODIFIED, **error_responses(401, 404, 503)},
)
async def get_experiment(
    request: Request,
    experiment_id: ExperimentIdDep,
    settings: SettingsDep,
    credentials: CredentialsDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Read in one thread with one connection (service.reads); 304 when it is unchanged."""
    return await authorized_read(
        request,
        settings,
        credentials,
        lambda connection, principal: experiment_response(
            connection,
            experiment_id,
            principal.visible_owner,
            if_none_match,
            CONSUMERS.get(connection, settings),
        ),
    )


@read_router.get(
    "/{experiment_id}/events",
    response_class=StreamingResponse,
    summary="Follow an experiment as server-sent events: status, levels, progress, end",
    responses={
        200: {
            "description": "A text/event-stream of `status`, `level`, `progress` and `end` "
            "events (each `data` one JSON object, each `id` a cursor for Last-Event-ID), with "
            "a comment line every few seconds while nothing happens; it ends after `end`.",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        **error_responses(401, 404, 422, 503),
    },
)
async def experiment_events(
    request: Request,
    experiment_id: ExperimentIdDep,
    settings: SettingsDep,
    credentials: CredentialsDep,
    last_event_id: Annotated[
        str | None,
        # A header is a string or absent (the `null` of `str | None` would be sent as the text
        # "null"); service.events checks the pattern with its own error, stated here for the
        # contract.
        WithJsonSchema({"type": "string", "maxLength": 100, "pattern": LAST_EVENT_ID_PATTERN}),
        Header(
            alias="Last-Event-ID",
            max_length=100,
            description="The id of the last event received: resume after it.",
        ),
    ] = None,
) -> StreamingResponse:
    """Live progress without polling (service.events): resumable, ends with the experiment."""
    return await event_stream(request, settings, credentials, experiment_id, last_event_id)


@router.post(
    "/{experiment_id}/cancel",
    response_model=ExperimentOut,
    summary="Cancel an experiment",
    responses=error_responses(401, 404, 409, 503),
)
def cancel_experiment(
    experiment_id: ExperimentIdDep, session: SessionDep, owner: OwnerDep
) -> ExperimentOut:
    """A queued experiment is cancelled at once and never starts; a running one stops at its
    next evaluation and keeps the levels it finished. Cancelling twice is harmless.
    """
    experiment = experiments.request_cancel(session, experiment_id, owner=owner)
    session.commit()
    if experiment is None:
        raise not_found(experiment_id)
    if experiment.status in (Status.SUCCEEDED, Status.FAILED):
        raise Conflict(
            f"experiment {experiment_id} {stands(experiment.status)} already; nothing to cancel",
            error_type="already_finished",
        )
    return experiment_out(experiment)


@router.delete(
    "/{experiment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a finished experiment and its artifacts",
    responses={204: {"description": "Deleted."}, **error_responses(401, 404, 409, 503)},
)
def delete_experiment(
    experiment_id: ExperimentIdDep, session: SessionDep, settings: SettingsDep, owner: OwnerDep
) -> Response:
    experiment = experiments.get(session, experiment_id, owner=owner)
    if experiment is None:
        raise not_found(experiment_id)
    dependents = experiments.mask_dependents(session, experiment_id)
    if dependents:
        session.rollback()
        shown = ", ".join(dependents[:10]) + (" ..." if len(dependents) > 10 else "")
        raise Conflict(
            f"experiment {experiment_id} is the mask source of {len(dependents)} experiment(s) "
            f"that are queued, running, or cancelled or failed and so resumable: {shown}; "
            "delete them first, or wait until they succeed",
            error_type="mask_source_in_use",
            details=[
                detail(["path", "experiment_id"], f"mask source of {d}", "mask_source_in_use")
                for d in dependents[:10]
            ],
        )
    if not experiments.delete_experiment(session, experiment_id):
        session.rollback()
        raise Conflict(
            f"experiment {experiment_id} {stands(experiment.status)}; only succeeded, failed or "
            "cancelled experiments can be deleted (cancel it first)",
            error_type="not_finished",
        )
    session.commit()
    artifacts.remove_experiment(settings, experiment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _check_model_filter(model: str | None) -> None:
    """A model filter names a model this service knows (built-in or installed plugin). Checked
    in the route, not by the query's type, so that a request without a key is a 401 first:
    the allowed names depend on what is installed and are not in openapi.yaml."""
    names = MODELS.names()
    if model is None or model in names:
        return
    close = difflib.get_close_matches(model, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    message = f"query.model: unknown model {model!r}; one of {', '.join(names)}{hint}"
    raise Unprocessable(message, details=[detail(("query", "model"), message, "literal_error")])
