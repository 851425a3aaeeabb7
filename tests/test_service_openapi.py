"""openapi.yaml is the published contract: it must be exactly what the app generates."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app as lth
from lth_core.registry.models import MODELS
from service import openapi
from service.main import create_app
from store.broker import ALL_QUEUES


def test_openapi_yaml_is_in_sync_with_the_app() -> None:
    generated = openapi.render_yaml(create_app())
    on_disk = openapi.OPENAPI_PATH.read_text()
    assert on_disk == generated, "openapi.yaml is out of date: run `lth openapi`"


def test_lth_openapi_check_agrees() -> None:
    result = CliRunner().invoke(lth, ["openapi", "--check"])
    assert result.exit_code == 0, result.output


def test_every_error_response_is_documented_with_the_error_shape() -> None:
    document = yaml.safe_load(openapi.OPENAPI_PATH.read_text())
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (
                        method,
                        path,
                        code,
                    )
    body = document["paths"]["/experiments"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"].endswith("/ExperimentSpecInput")
    assert schemas["ExperimentSpecInput"]["required"] == ["model"]
    assert "required" not in schemas["TrainingSpecInput"]
    assert "ExperimentSpec" in schemas


def test_minimal_spec_from_the_document_is_accepted() -> None:
    """The relaxed input schema is honest: only `model` is needed."""
    from lth_core.spec import parse_spec

    assert parse_spec({"model": "conv2"}).training.optimizer == "adam"


def test_the_live_fuzz_config_names_this_servers_queues_and_models() -> None:
    """tests/fuzz/schemathesis.toml lists what the contract leaves open (the queues a server
    knows, its models); the lists are the broker's and the registry's, not a stale copy."""
    config = tomllib.loads((Path(__file__).parent / "fuzz" / "schemathesis.toml").read_text())
    assert config["dictionaries"]["queues"]["values"] == list(ALL_QUEUES)
    assert config["dictionaries"]["models"]["values"] == list(MODELS.builtin_names())
