"""The published OpenAPI document: generated from the app, checked into ``openapi.yaml``.

The request body is read by hand (so that a spec missing everything but ``model`` is valid:
the paper's defaults fill it), so its schema is added here: ``ExperimentSpecInput`` is the
spec's validation schema with ``required`` relaxed to what a user must really give, and
``ExperimentSpec`` (what responses echo) is the full spec with every field present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from lth_core.spec import ExperimentSpec

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"

# Sections the paper's defaults fill in: a user may leave out any of their fields.
_DEFAULTED = ("DatasetSpec", "TrainingSpec", "PruningSpec")


def spec_components() -> dict[str, Any]:
    """Component schemas for the spec as accepted (``*Input``) and as returned."""
    components: dict[str, Any] = {}

    out = ExperimentSpec.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    components.update(out.pop("$defs", {}))
    components["ExperimentSpec"] = out

    inp = ExperimentSpec.model_json_schema(
        mode="validation", ref_template="#/components/schemas/{model}Input"
    )
    for name, schema in inp.pop("$defs", {}).items():
        if name in _DEFAULTED:
            schema.pop("required", None)
        components[f"{name}Input"] = schema
    inp["required"] = ["model"]
    inp["title"] = "ExperimentSpecInput"
    components["ExperimentSpecInput"] = inp
    return components


def install_openapi(app: FastAPI) -> None:
    """Replaces ``app.openapi`` with the generator that adds the spec components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec_components())
            _use_error_shape_for_422(schema)
            _declare_admission_responses(schema)
            _link_submission_to_its_operations(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _use_error_shape_for_422(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body; ours (errors.install_error_handlers) differs."""
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            content = response.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                response["description"] = "Invalid input; details name each offending field"
                content["schema"] = dict(error_ref)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def _declare_admission_responses(schema: dict[str, Any]) -> None:
    """Admission (service.admission) may answer any operation but the exempt ones (health,
    readiness, metrics) 503 ``overloaded`` or 429 (one key's share) before its route runs: each
    such operation declares both, and every 429 and 503 its Retry-After header."""
    from service.admission import is_exempt
    from service.errors import error_description

    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code in ("429", "503"):
                if code not in responses and is_exempt(path):
                    continue
                entry = responses.setdefault(
                    code,
                    {
                        "description": error_description(int(code)),
                        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                    },
                )
                entry["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying",
                        "schema": {"type": "integer"},
                    }
                }
            operation["responses"] = dict(sorted(responses.items()))


_ERROR_REF = "#/components/schemas/ErrorResponse"


def _link_submission_to_its_operations(schema: dict[str, Any]) -> None:
    """OpenAPI links from ``POST /experiments``'s 201 to every operation taking its id.

    A client (or a stateful fuzzer such as schemathesis) can then follow one submission
    through its life: read it, its artifacts and plots, cancel it, delete it. Other path
    parameters (``level``) are left to the client.
    """
    paths = schema.get("paths", {})
    created = paths.get("/experiments", {}).get("post", {}).get("responses", {}).get("201")
    if created is None:
        return
    links: dict[str, Any] = {}
    for operations in paths.values():
        for operation in operations.values():
            names = {
                p.get("name") for p in operation.get("parameters", []) if p.get("in") == "path"
            }
            if "experiment_id" not in names or "operationId" not in operation:
                continue
            op_id = operation["operationId"]
            links[op_id.split("-", 1)[-1]] = {
                "operationId": op_id,
                "parameters": {"path.experiment_id": "$response.body#/id"},
            }
    if links:
        created["links"] = links


def operation_id(route: APIRoute) -> str:
    """Readable operation ids (``experiments-get_experiment``) for generated clients."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def render_yaml(app: FastAPI) -> str:
    """The document as YAML, stable across runs (insertion order, no line folding)."""
    return yaml.safe_dump(app.openapi(), sort_keys=False, width=10_000, allow_unicode=True)
