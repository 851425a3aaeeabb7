"""Issue 24, admission by size: a spec's parameters, activation memory and artifact bytes are
estimated at submit from torch-free facts and refused above the limits of the queue's device
class; an owner's experiments together hold at most LTH_MAX_OWNER_BYTES of artifacts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_service_support import assert_error, submit, tiny_spec

from lth_core.registry.models import MODELS
from lth_core.registry.models.sizes import model_size
from lth_core.spec import parse_spec
from service.main import create_app
from service.spec_size import check_size, estimate
from store.settings import Settings

pytest_plugins = ("test_service_support",)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_torch_free_sizes_are_the_real_models(model: str) -> None:
    from torch import nn

    from lth_core.nn.models import build_model

    for shape, classes in (((1, 28, 28), 10), ((3, 40, 24), 7)):
        module = build_model(model, shape, classes)
        size = model_size(model, shape, classes)
        assert size is not None
        assert size.parameters == sum(p.numel() for p in module.parameters())
        layers = [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert size.prunable == sum(m.weight.numel() for m in layers)


def test_the_papers_settings_pass_the_default_limits() -> None:
    for model in MODELS:
        spec = parse_spec({"model": model})
        for queue in ("lth", "lth.cpu", "lth.gpu"):
            assert check_size(spec, Settings(), queue) is not None


def _big(model: str, **training: Any) -> dict[str, Any]:
    """Found accepted: synthetic 3x512x512 images (within LTH_MAX_DATASET_VALUES)."""
    return {
        "model": model,
        "dataset": {
            "name": "synthetic",
            "validation_size": 10,
            "synthetic": {
                "input_shape": [3, 512, 512],
                "num_classes": 10,
                "train_size": 220,
                "test_size": 30,
            },
        },
        "training": {"iterations": 100, "eval_every": 50, **training},
        "pruning": {"levels": 1},
    }


def test_models_too_large_for_the_device_class_are_refused(client: TestClient) -> None:
    conv2 = _big("conv2", batch_size=200)
    assert estimate(parse_spec(conv2)).parameters > 1.07e9  # type: ignore[union-attr]
    for queue, setting in (
        ("lth", "LTH_MAX_PARAMETERS_CPU"),
        ("lth.gpu", "LTH_MAX_PARAMETERS_GPU"),
    ):
        response = client.post("/experiments", json=conv2, params={"queue": queue})
        error = assert_error(response, 422, "limit_exceeded")
        assert setting in error["message"] and "1,073,849,162 parameters" in error["message"]
        assert error["details"][0]["loc"] == ["body", "model"]
    vgg = _big("vgg19", batch_size=64)
    for queue, setting in (
        ("lth", "LTH_MAX_ACTIVATION_BYTES_CPU"),
        ("lth.gpu", "LTH_MAX_ACTIVATION_BYTES_GPU"),
    ):
        response = client.post("/experiments", json=vgg, params={"queue": queue})
        error = assert_error(response, 422, "limit_exceeded")
        assert setting in error["message"] and "GB of activations" in error["message"]
        assert error["details"][0]["loc"] == ["body", "training", "batch_size"]
    assert client.get("/experiments").json()["total"] == 0


def test_too_many_artifact_bytes_are_refused(settings: Settings) -> None:
    lenets = {
        "model": "lenet_300_100",
        "trials": 50,
        "pruning": {"levels": 30},
        "training": {"iterations": 1000},
    }
    assert 2e9 < estimate(parse_spec(lenets)).artifact_bytes < 2.3e9  # type: ignore[union-attr]
    tight = settings.model_copy(update={"max_experiment_bytes": 10**9})
    with TestClient(create_app(tight)) as client:
        error = assert_error(client.post("/experiments", json=lenets), 422, "limit_exceeded")
        assert "LTH_MAX_EXPERIMENT_BYTES" in error["message"]


def test_an_owner_holds_at_most_the_storage_quota(settings: Settings) -> None:
    one = estimate(parse_spec(tiny_spec())).artifact_bytes  # type: ignore[union-attr]
    tight = settings.model_copy(update={"max_owner_bytes": int(2.5 * one)})
    with TestClient(create_app(tight)) as client:
        first = submit(client)
        submit(client, tiny_spec(seed=2))
        error = assert_error(
            client.post("/experiments", json=tiny_spec(seed=3)), 422, "storage_quota_exceeded"
        )
        assert "LTH_MAX_OWNER_BYTES" in error["message"]
        assert client.get("/experiments").json()["total"] == 2, "the refused one is not stored"
        client.post(f"/experiments/{first['id']}/cancel")
        assert client.delete(f"/experiments/{first['id']}").status_code == 204
        submit(client, tiny_spec(seed=3))  # deleting freed its share
