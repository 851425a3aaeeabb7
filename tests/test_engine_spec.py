"""The spec: paper defaults filled in, bad input refused with the field named, no torch needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from lth_core.spec import parse_spec
from lth_core.spec.errors import problems
from lth_core.spec.short_budget import notes
from lth_core.storage.provenance import spec_sha256


def test_paper_defaults_fill_what_the_spec_leaves_out() -> None:
    spec = parse_spec({"model": "lenet_300_100", "dataset": {"name": "fashion_mnist"}})
    assert spec.training.optimizer == "adam"
    assert spec.training.learning_rate == pytest.approx(1.2e-3)
    assert spec.training.batch_size == 60
    assert spec.training.iterations == 50_000
    assert spec.pruning.strategy == "layerwise"
    assert (spec.pruning.rates.fc, spec.pruning.rates.output) == (0.2, 0.1)
    assert spec.dataset.validation_size == 5000
    assert spec.reset.mode == "init"
    assert spec.controls == ["random_reinit"]


@pytest.mark.parametrize(
    ("model", "optimizer", "lr", "batch", "iterations", "strategy"),
    [
        ("conv2", "adam", 2e-4, 60, 20_000, "layerwise"),
        ("conv4", "adam", 3e-4, 60, 25_000, "layerwise"),
        ("conv6", "adam", 3e-4, 60, 30_000, "layerwise"),
        ("vgg19", "sgd", 0.1, 64, 112_480, "global"),
        ("resnet18", "sgd", 0.1, 128, 30_000, "global"),
    ],
)
def test_each_model_gets_its_paper_setting(
    model: str, optimizer: str, lr: float, batch: int, iterations: int, strategy: str
) -> None:
    spec = parse_spec({"model": model})
    assert spec.dataset.name == "cifar10"
    assert spec.training.optimizer == optimizer
    assert spec.training.learning_rate == pytest.approx(lr)
    assert spec.training.batch_size == batch
    assert spec.training.iterations == iterations
    assert spec.pruning.strategy == strategy


def test_deep_nets_exclude_what_the_paper_leaves_unpruned() -> None:
    assert parse_spec({"model": "vgg19"}).pruning.exclude == ["output"]
    assert parse_spec({"model": "resnet18"}).pruning.exclude == ["output", "shortcut"]
    resnet = parse_spec({"model": "resnet18"}).training
    assert resnet.lr_milestones == [20_000, 25_000] and resnet.weight_decay == 1e-4


def test_user_values_override_defaults_section_by_section() -> None:
    spec = parse_spec(
        {"model": "conv6", "pruning": {"rates": {"fc": 0.3}}, "training": {"iterations": 100}}
    )
    assert spec.pruning.rates.fc == 0.3
    assert spec.pruning.rates.conv == 0.15  # untouched default of conv6
    assert spec.training.learning_rate == pytest.approx(3e-4)


def _error_locs(data: dict) -> list[tuple]:
    with pytest.raises(ValidationError) as info:
        parse_spec(data)
    return [tuple(e["loc"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"model": "lenet_301"}, ("model",)),
        (
            {"model": "lenet_300_100", "pruning": {"rates": {"fc": -0.1}}},
            ("pruning", "rates", "fc"),
        ),
        ({"model": "lenet_300_100", "pruning": {"rates": {"fc": 1.0}}}, ("pruning", "rates", "fc")),
        (
            {"model": "lenet_300_100", "training": {"learning_rte": 0.1}},
            ("training", "learning_rte"),
        ),
        ({"model": "lenet_300_100", "training": {"batch_size": 0}}, ("training", "batch_size")),
        ({"model": "lenet_300_100", "training": {"eval_every": 10**6}}, ("training",)),
        ({"model": "lenet_300_100", "dataset": {"name": "imagenet"}}, ("dataset", "name")),
        ({"model": "lenet_300_100", "controls": ["random_reinit", "random_reinit"]}, ()),
        ({"model": "lenet_300_100", "reset": {"mode": "rewind", "rewind_iteration": 10**6}}, ()),
        ({"model": "lenet_300_100", "training": {"lr_milestones": [300, 200]}}, ("training",)),
    ],
)
def test_bad_specs_name_the_field(data: dict, loc: tuple) -> None:
    locs = _error_locs(data)
    assert loc in locs, locs


def test_spec_module_imports_without_torch() -> None:
    code = (
        "import sys; from lth_core.spec import parse_spec; from lth_core.results import summaries; from lth_core.storage import layout; "
        "parse_spec({'model': 'vgg19'}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_count_written_as_a_whole_float_is_that_integer() -> None:
    """JSON Schema's "integer" (openapi.yaml) takes 2000.0; the spec does too, and stores 2000,
    so the normalized spec and its digest do not depend on how a count was written."""
    as_ints = {
        "model": "lenet_300_100",
        "seed": 7,
        "seeds": [1, 2],
        "dataset": {
            "name": "synthetic",
            "train_subset": 900,
            "synthetic": {"input_shape": [1, 8, 8], "train_size": 1000},
        },
        "training": {"iterations": 2000, "lr_milestones": [1000], "patience": 3},
        "pruning": {"levels": 2, "early_bird": {"window": 4}},
        "controls_at": {"levels": [1, 2]},
        "analysis": {"instability": {"iterations": [0, 100]}},
    }
    as_floats = json.loads(
        json.dumps(as_ints),
        parse_int=lambda digits: float(digits),  # every count written 2000.0
    )
    assert as_floats["training"]["iterations"] == 2000.0
    assert isinstance(as_floats["training"]["iterations"], float)
    spec = parse_spec(as_floats)
    dumped = spec.model_dump(mode="json")
    assert dumped == parse_spec(as_ints).model_dump(mode="json")
    assert spec_sha256(dumped) == spec_sha256(parse_spec(as_ints).model_dump(mode="json"))
    assert type(spec.training.iterations) is int and spec.training.iterations == 2000
    assert spec.dataset.synthetic is not None
    assert all(type(d) is int for d in spec.dataset.synthetic.input_shape)
    assert [type(m) for m in spec.training.lr_milestones] == [int]
    # The round trip: the stored spec parses to itself.
    assert parse_spec(json.loads(json.dumps(dumped))).model_dump(mode="json") == dumped
    # Budget-dependent defaults adapt alike (eval_every, milestones scaled to the budget).
    short = {"model": "lenet_300_100", "training": {"iterations": 50.0}}
    assert parse_spec(short).training.eval_every == 50
    assert notes(short) == notes({"model": "lenet_300_100", "training": {"iterations": 50}})


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        ({"training": {"iterations": 2000.5}}, "training.iterations", "got a number 2000.5"),
        ({"training": {"iterations": True}}, "training.iterations", "got a boolean true"),
        ({"training": {"iterations": "2000"}}, "training.iterations", "got a string '2000'"),
        ({"seed": float("inf")}, "seed", "got a number inf"),
        (
            {"dataset": {"name": "synthetic", "synthetic": {"input_shape": [1, 28.5, 28]}}},
            "dataset.synthetic.input_shape[1]",
            "got a number 28.5",
        ),
        ({"training": {"lr_milestones": [10.25]}}, "training.lr_milestones[0]", "number 10.25"),
    ],
)
def test_a_count_with_a_fraction_is_refused_naming_the_field(
    changes: dict, loc: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        parse_spec({"model": "lenet_300_100", **changes})
    lines = [p.line for p in problems(info.value)]
    assert any(line.startswith(f"{loc}: must be a whole number, ") for line in lines), lines
    assert any(message in line for line in lines), lines
