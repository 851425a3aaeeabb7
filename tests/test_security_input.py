"""Input the database cannot store, ambiguous JSON, id spellings, specs that cannot run (issue 24).

Found before: PostgreSQL answered 500 to ``{"name": "nul\\u0000byte"}`` and to
``GET /experiments?name=a%00b``; ``{"model": "a", "model": "b"}`` silently took the last; an
upper-case id without dashes was a 404 while its dashed form worked; ``train_subset: 1`` with
batch 60 was accepted and failed on the worker.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from test_service_support import assert_error, submit, tiny_spec

from lth_core.spec import ExperimentSpec
from store.settings import Settings

pytest_plugins = ("test_service_support",)


def _post_raw(client: TestClient, raw: str) -> object:
    return client.post(
        "/experiments", content=raw.encode(), headers={"Content-Type": "application/json"}
    )


def test_unstorable_text_is_422_in_body_and_query(client: TestClient) -> None:
    bad_values = [
        {**tiny_spec(), "name": "nul\u0000byte"},
        {**tiny_spec(), "tags": ["ok", "t\u0000"]},
        {**tiny_spec(), "name": "\ud800lone"},
        {**tiny_spec(), "nul\u0000key": 1},
    ]
    for spec in bad_values:
        answer = _post_raw(client, json.dumps(spec))
        error = assert_error(answer, 422, "invalid_text")
        assert "\u0000" not in error["message"] and "U+" in error["message"]
    answer = _post_raw(client, json.dumps({**tiny_spec(), "name": "nul\u0000byte"}))
    assert assert_error(answer, 422)["details"][0]["loc"] == ["body", "name"]
    for query in ("name=a%00b", "tag=%00", "model=lenet%00", "a%00b=1"):
        assert_error(client.get(f"/experiments?{query}"), 422)
    assert_error(client.get("/experiments?name=a%00b"), 422, "invalid_text")
    experiment_id = submit(client)["id"]
    for path in (f"/experiments/{experiment_id}", f"/experiments/{experiment_id}/levels.csv"):
        assert_error(client.get(f"{path}?x=%00"), 422)
    assert client.get("/experiments").json()["total"] == 1  # nothing else was stored


def test_duplicate_keys_are_refused_at_any_depth(client: TestClient) -> None:
    body = json.dumps(tiny_spec())
    twice = body[:-1] + ', "model": "conv2"}'
    error = assert_error(_post_raw(client, twice), 422, "invalid_json")
    assert "'model' twice" in error["message"]
    nested = body.replace('"iterations": 50', '"iterations": 50, "iterations": 60')
    assert_error(_post_raw(client, nested), 422, "invalid_json")


def test_ids_match_in_any_case_and_both_forms(client: TestClient) -> None:
    experiment_id = submit(client)["id"]
    dashed = f"{experiment_id[:8]}-{experiment_id[8:12]}-{experiment_id[12:16]}-" + (
        f"{experiment_id[16:20]}-{experiment_id[20:]}"
    )
    for spelling in (experiment_id, experiment_id.upper(), dashed, dashed.upper()):
        answer = client.get(f"/experiments/{spelling}")
        assert answer.status_code == 200 and answer.json()["id"] == experiment_id, spelling
        assert client.get(f"/experiments/{spelling}/levels.csv").status_code == 200
    compare = client.get("/compare", params={"ids": experiment_id.upper()})
    assert compare.status_code == 200, compare.text


@pytest.mark.parametrize(
    ("dataset", "batch", "words"),
    [
        ({"train_subset": 1}, 60, "larger than the 1 training example"),
        ({"synthetic": {"train_size": 260}, "validation_size": 200}, 61, "the 60 training"),
        ({"name": "mnist", "validation_size": 59_990}, 60, "the 10 training"),
    ],
)
def test_a_spec_that_cannot_run_is_refused_at_submit(
    client: TestClient, dataset: dict[str, object], batch: int, words: str
) -> None:
    spec = tiny_spec()
    if dataset.get("name") == "mnist":
        spec["dataset"] = {"name": "mnist"}
    spec["dataset"].update(dataset)
    spec["training"]["batch_size"] = batch
    error = assert_error(client.post("/experiments", json=spec), 422, "invalid_spec")
    assert words in error["message"] and "\n" not in error["message"]
    spec["training"]["batch_size"] = 1 if "train_subset" in dataset else 10
    assert ExperimentSpec.model_validate(spec).training.batch_size == spec["training"]["batch_size"]


def test_validation_that_leaves_no_training_data_is_refused() -> None:
    with pytest.raises(ValidationError, match="smaller than the 60000 training examples"):
        ExperimentSpec.model_validate(
            {"model": "lenet_300_100", "dataset": {"name": "mnist", "validation_size": 60_000}}
        )


def test_a_count_written_2000_0_is_accepted_as_2000_and_2000_5_is_refused(
    settings: Settings,
) -> None:
    """openapi.yaml says "integer", which JSON Schema takes to include 2000.0 (what a JavaScript
    or numpy client may send): the API accepts it and stores the whole number, so the same spec
    written with 2000 is its duplicate. A fraction is refused, naming the field."""
    from service.consumers import CONSUMERS
    from service.main import create_app

    CONSUMERS.clear()
    strict = settings.model_copy(update={"allow_duplicate_specs": False})  # the default rule
    with TestClient(create_app(strict)) as client:
        _whole_counts(client)


def _whole_counts(client: TestClient) -> None:
    body = tiny_spec()
    body["training"] = {"iterations": 2000.0, "eval_every": 25.0, "lr_milestones": [1000.0]}
    body["dataset"]["synthetic"]["input_shape"] = [1.0, 28.0, 28.0]
    raw = json.dumps(body)
    assert '"iterations": 2000.0' in raw
    created = _post_raw(client, raw)
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert spec["training"]["iterations"] == 2000
    assert '"iterations":2000,' in created.text  # an integer in the echoed spec, not 2000.0
    assert spec["dataset"]["synthetic"]["input_shape"] == [1, 28, 28]
    # The normalized spec is what duplicates are found by: 2000 is the same spec.
    same = tiny_spec()
    same["training"] = {"iterations": 2000, "eval_every": 25, "lr_milestones": [1000]}
    same["dataset"]["synthetic"]["input_shape"] = [1, 28, 28]
    error = assert_error(client.post("/experiments", json=same), 409, "duplicate_spec")
    assert created.json()["id"] in error["details"][0]["msg"]

    body["training"]["iterations"] = 2000.5
    error = assert_error(_post_raw(client, json.dumps(body)), 422, "invalid_spec")
    assert [d["loc"] for d in error["details"]] == [["body", "training", "iterations"]]
    assert error["details"][0]["msg"] == "must be a whole number, got a number 2000.5"
