"""Each limit refused with a clear 4xx that names it: body size (413), spec bounds (422),
per-owner queued + running experiments (429 + Retry-After), missing levels (404)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_service_support import assert_error, submit, tiny_spec

from lth_core.spec import parse_spec
from lth_core.spec.paper_defaults import MODEL_NAMES
from service.main import create_app
from service.spec_limits import check_spec_limits, total_iterations
from store import api_keys, broker
from store.settings import Settings

pytest_plugins = ("test_service_support",)


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    """The app with small limits, so that tests can reach them cheaply."""
    small = settings.model_copy(
        update={"max_body_bytes": 4096, "max_active_per_owner": 2, "quota_retry_after_seconds": 7}
    )
    with TestClient(create_app(small)) as client:
        yield client


def test_the_papers_settings_are_within_the_default_limits() -> None:
    for model in MODEL_NAMES:
        spec = parse_spec({"model": model})
        check_spec_limits(spec, Settings())
    vgg = parse_spec({"model": "vgg19"})
    assert total_iterations(vgg) == 112_480 * (1 + 20 * 2)


def test_body_over_the_limit_is_413_declared_or_streamed(limited: TestClient) -> None:
    big = tiny_spec(name="x" * 5000)
    error = assert_error(limited.post("/experiments", json=big), 413, "body_too_large")
    assert "4,096 bytes" in error["message"] and "LTH_MAX_BODY_BYTES" in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "lenet_300_100", "name": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    streamed = limited.post(
        "/experiments", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(streamed, 413, "body_too_large")
    assert limited.get("/experiments").json()["total"] == 0
    assert limited.post("/experiments", json=tiny_spec()).status_code == 201


def _training(**changes: Any) -> dict[str, Any]:
    spec = tiny_spec()
    spec["training"].update(changes)
    return spec


@pytest.mark.parametrize(
    ("spec", "loc", "setting"),
    [
        (tiny_spec(pruning={"levels": 31}), ["body", "pruning", "levels"], "LTH_MAX_LEVELS"),
        (
            _training(iterations=250_001),
            ["body", "training", "iterations"],
            "LTH_MAX_ITERATIONS",
        ),
        (
            # Enough training data for the batch, or the spec itself is refused (it cannot run).
            {
                **_training(batch_size=1025),
                "dataset": {
                    "name": "synthetic",
                    "synthetic": {"train_size": 2000},
                    "validation_size": 200,
                },
            },
            ["body", "training", "batch_size"],
            "LTH_MAX_BATCH_SIZE",
        ),
        (
            tiny_spec(dataset={"name": "mnist", "train_subset": 1_000_001}),
            ["body", "dataset", "train_subset"],
            "LTH_MAX_TRAIN_EXAMPLES",
        ),
        (
            tiny_spec(
                dataset={
                    "name": "synthetic",
                    "validation_size": 10,
                    "synthetic": {"train_size": 100_000, "input_shape": [3, 64, 64]},
                }
            ),
            ["body", "dataset", "synthetic", "train_size"],
            "LTH_MAX_DATASET_VALUES",
        ),
        (
            tiny_spec(dataset={"name": "mnist", "root": "/etc"}),
            ["body", "dataset", "root"],
            "LTH_ALLOW_DATASET_ROOT",
        ),
        (
            # 200,000 iterations x (1 + 30 levels x 3 runs): a run of years on one GPU.
            tiny_spec(
                model="vgg19",
                training={"iterations": 200_000},
                pruning={"levels": 30},
                controls=["random_reinit", "random_prune"],
            ),
            ["body", "training", "iterations"],
            "LTH_MAX_TOTAL_ITERATIONS",
        ),
        (
            _training(eval_every=1),
            ["body", "training", "eval_every"],
            "LTH_MAX_EVAL_RATIO",
        ),
    ],
    ids=["levels", "iterations", "batch", "subset", "synthetic", "root", "total", "eval"],
)
def test_each_spec_bound_is_422_naming_it(
    client: TestClient, spec: dict[str, Any], loc: list[str], setting: str
) -> None:
    error = assert_error(client.post("/experiments", json=spec), 422, "limit_exceeded")
    assert error["details"][0]["loc"] == loc
    assert setting in error["message"]
    assert client.get("/experiments").json()["total"] == 0


def test_eval_every_message_says_what_would_pass(client: TestClient) -> None:
    error = assert_error(client.post("/experiments", json=_training(eval_every=1)), 422)
    needed = int(error["message"].rsplit(" ", 1)[1])
    assert client.post("/experiments", json=_training(eval_every=needed)).status_code == 201
    assert client.post("/experiments", json=_training(eval_every=needed - 1)).status_code == 422


def test_limits_are_configurable(settings: Settings) -> None:
    loose = settings.model_copy(update={"max_levels": 40, "allow_dataset_root": True})
    with TestClient(create_app(loose)) as client:
        submit(client, tiny_spec(pruning={"levels": 35}))
        mnist = tiny_spec(dataset={"name": "mnist", "root": "/data"})
        mnist["training"] = {"iterations": 1000, "eval_every": 500}
        submit(client, mnist)


def test_per_owner_active_limit_is_429_with_retry_after(
    limited: TestClient, settings: Settings
) -> None:
    from store.db import session_scope

    with session_scope(settings) as session:
        _, alice = api_keys.create_key(session, "alice")
        _, bob = api_keys.create_key(session, "bob")
    a, b = {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}
    first = submit(limited, tiny_spec(seed=1), headers={**a, "Idempotency-Key": "k1"})
    submit(limited, tiny_spec(seed=2), headers=a)
    refused = limited.post("/experiments", json=tiny_spec(seed=3), headers=a)
    error = assert_error(refused, 429, "too_many_active")
    assert refused.headers["Retry-After"] == "7"
    assert "LTH_MAX_ACTIVE_PER_OWNER" in error["message"] and "2" in error["message"]
    assert limited.get("/experiments", headers=a).json()["total"] == 2  # nothing stored
    assert broker.queue_depth(settings) == 2  # nothing sent
    # A retry of an accepted submission is still answered; another owner is unaffected.
    replay = limited.post(
        "/experiments", json=tiny_spec(seed=1), headers={**a, "Idempotency-Key": "k1"}
    )
    assert replay.status_code == 201 and replay.json()["id"] == first["id"]
    submit(limited, tiny_spec(seed=4), headers=b)
    # Finishing (here: cancelling) one frees a place.
    limited.post(f"/experiments/{first['id']}/cancel", headers=a)
    submit(limited, tiny_spec(seed=5), headers=a)


def test_missing_levels_are_404(client: TestClient) -> None:
    experiment_id = submit(client)["id"]  # levels 0..1
    for level in ("2", "999", "1000", "-1", str(10**30)):
        for what in ("mask", "metrics"):
            response = client.get(f"/experiments/{experiment_id}/levels/{level}/{what}")
            assert_error(response, 404, "no_such_level")
