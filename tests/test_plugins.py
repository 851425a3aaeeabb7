"""Your own network and your own data (issue 23): the example plugin package (examples/plugin)
installed into a temporary target, then `lth run`, the API, `GET /registry` and a worker
without it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app as lth
from store.db import session_scope
from store.models import Experiment as ExperimentRow
from store.settings import Settings

pytest_plugins = ("test_service_support",)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lth-example-plugin==0.1.0"
FAST = {"iterations": 40, "eval_every": 20}


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --target` of examples/plugin (from a copy: building writes beside it)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(ROOT / "examples/plugin", tmp / "src")
    site = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True,
    )  # fmt: skip
    return site


@pytest.fixture
def plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin installed for this process (as PYTHONPATH would put it on sys.path)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    yield plugin_site


def _env(site: Path) -> dict[str, str]:
    # One torch thread: tiny steps on a shared 2-core machine are many times slower with two.
    path = os.pathsep.join([str(site), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _lth(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lth, list(args))
    return result.exit_code, result.output


# ------------------------------------------------------------------ lth run


def test_lth_run_prunes_a_plugin_cnn_layer_by_layer(plugin_site: Path, tmp_path: Path) -> None:
    """In a fresh process with the plugin on PYTHONPATH: the plugin's paper defaults, its
    normalization, its conv and linear layers pruned at their kinds' rates, its own control."""
    spec = {
        "model": "tiny_cnn",
        "training": FAST,
        "pruning": {"levels": 1},
        "controls": ["random_reinit", "init_magnitude"],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(tmp_path / "spec.json"), "--out", str(out),
         "--device", "cpu", "--quiet"],
        env=_env(plugin_site), capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    written = json.loads((out / "spec.json").read_text())
    assert written["dataset"]["name"] == "blobs" and written["training"]["optimizer"] == "adam"
    assert written["plugins"] == {
        "model:tiny_cnn": PACKAGE,
        "dataset:blobs": PACKAGE,
        "control:init_magnitude": PACKAGE,
    }
    from safetensors.torch import load_file

    mask = load_file(out / "levels/001/mask.safetensors")
    kept = {name: float(m.float().mean()) for name, m in mask.items()}
    assert set(kept) == {"conv1.weight", "conv2.weight", "fc.weight", "head.weight"}
    assert kept["conv1.weight"] == pytest.approx(0.9, abs=0.02)  # conv 10%
    assert kept["fc.weight"] == pytest.approx(0.8, abs=0.01)  # fc 20%
    assert kept["head.weight"] == pytest.approx(0.9, abs=0.02)  # the last linear: output 10%
    level = json.loads((out / "levels/001/summary.json").read_text())
    assert {"ticket", "random_reinit", "init_magnitude"} <= set(json.dumps(level).split('"'))
    ticket = load_file(out / "ticket.safetensors")
    assert "init/conv1.weight" in ticket and "mask/head.weight" in ticket


def test_a_bare_plugin_prunes_globally_and_its_ticket_loads_into_its_own_module(
    plugin: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    """The two callables alone (no facts): the spec gives its sections, the data keep their
    values (no normalization), global pruning with exclude, the ticket applied."""
    import torch
    from lth_example_plugin.nets import build_mlp

    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec
    from lth_core.tickets import load_ticket

    spec = {
        "model": "tiny_mlp",
        "dataset": {"name": "blobs_raw", "validation_size": 100},
        "training": {"optimizer": "sgd", "learning_rate": 0.1, "batch_size": 50, **FAST},
        "pruning": {"strategy": "global", "global_rate": 0.5, "levels": 1, "exclude": ["output"]},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, output = _lth("run", str(tmp_path / "spec.json"), "--out", str(tmp_path / "o"),
                        "--device", "cpu", "--quiet")  # fmt: skip
    assert code == 0, output
    assert load_ticket(tmp_path / "o/ticket.safetensors").model == "tiny_mlp"
    experiment = Experiment(parse_spec(spec), tmp_path / "o", device="cpu")
    assert experiment.pending() == []  # the folder is the finished experiment
    experiment.export_ticket(1, tmp_path / "level1.safetensors")
    ticket = load_ticket(tmp_path / "level1.safetensors")
    assert ticket.model == "tiny_mlp" and ticket.dataset == "blobs_raw"
    assert ticket.mean == (0.0, 0.0, 0.0) and ticket.std == (1.0, 1.0, 1.0)  # as given
    assert set(ticket.masks) == {"1.weight"}  # "3.weight", the output layer, excluded
    assert float(ticket.masks["1.weight"].float().mean()) == pytest.approx(0.5, abs=0.01)
    module = build_mlp((3, 8, 8), 4)
    handle = ticket.apply(module)
    torch.optim.SGD(module.parameters(), lr=0.5).zero_grad()
    module(torch.randn(5, 3, 8, 8)).sum().backward()
    pruned = ~ticket.masks["1.weight"]
    assert bool((module[1].weight[pruned] == 0).all())
    assert bool((module[1].weight.grad[pruned] == 0).all())
    handle.remove()


# ------------------------------------------------------------------ spec errors


def _problems(data: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    from lth_core.spec import parse_spec
    from lth_core.spec.errors import problems

    with pytest.raises(ValidationError) as caught:
        parse_spec(data)
    return [p.line for p in problems(caught.value)]


def test_unknown_names_are_refused_with_suggestions_over_plugins(plugin: Path) -> None:
    assert _problems({"model": "tiny_cn"}) == [
        "model: 'tiny_cn' is not one of the allowed values: lenet_300_100, conv2, conv4, conv6, "
        "vgg19, resnet18, tiny_cnn, tiny_mlp; did you mean 'tiny_cnn'?"
    ]
    [line] = _problems({"model": "tiny_cnn", "dataset": {"name": "blob"}})
    assert line.startswith("dataset.name: 'blob' is not one of") and "did you mean 'blobs'" in line
    [line] = _problems({"model": "tiny_cnn", "controls": ["init_magnitud"]})
    assert "did you mean 'init_magnitude'" in line
    lines = _problems({"model": "tiny_mlp"})
    assert lines[0] == (
        "dataset: required: model 'tiny_mlp' (plugin package lth-example-plugin==0.1.0) has no "
        "paper defaults, so the spec gives dataset, training and pruning itself"
    )
    assert [line.split(":")[0] for line in lines] == ["dataset", "training", "pruning"]
    [line] = _problems({"model": "tiny_cnn", "training": {**FAST, "dropout": 0.5}})
    assert "training.dropout applies to the built-in models" in line


def test_without_the_plugin_its_names_are_unknown(plugin_site: Path) -> None:
    [line] = _problems({"model": "tiny_cnn"})
    assert "tiny_cnn" not in line.split("values:")[1]


# ------------------------------------------------------------------ the service


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_through_the_api_end_to_end(
    plugin: Path, client: TestClient, settings: Settings, one_torch_thread: None
) -> None:
    from worker.level.task import LevelTask

    listing = client.get("/registry")
    assert listing.status_code == 200, listing.text
    models = {m["name"]: m for m in listing.json()["models"]}
    assert models["lenet_300_100"]["source"] == "built-in"
    cnn = models["tiny_cnn"]
    assert (cnn["source"], cnn["package"], cnn["version"]) == (
        "plugin",
        "lth-example-plugin",
        "0.1.0",
    )
    assert cnn["facts"]["layer_kinds"] == ["conv", "fc", "output"]
    datasets = {d["name"]: d for d in listing.json()["datasets"]}
    assert (
        datasets["blobs"]["facts"]["input_shape"] == [3, 8, 8]
        and datasets["blobs_raw"]["facts"] == {}
    )
    assert "init_magnitude" in {c["name"] for c in listing.json()["controls"]}

    refused = client.post("/experiments", json={"model": "tiny_cn"})
    assert refused.status_code == 422 and "did you mean 'tiny_cnn'?" in refused.text
    response = client.post(
        "/experiments", json={"model": "tiny_cnn", "training": FAST, "pruning": {"levels": 1}}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["spec"]["plugins"] == {"model:tiny_cnn": PACKAGE, "dataset:blobs": PACKAGE}
    outcomes = [
        LevelTask(settings, body["id"], send_next=lambda: None, device="cpu").run().value
        for _ in range(2)
    ]
    assert outcomes[-1] == "succeeded", outcomes
    done = client.get(f"/experiments/{body['id']}").json()
    assert done["status"] == "succeeded" and [lv["level"] for lv in done["levels"]] == [0, 1]
    assert client.get(f"/experiments/{body['id']}/ticket").status_code == 200
    assert {e["id"] for e in client.get("/experiments?model=tiny_cnn").json()["items"]} == {
        body["id"]
    }


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_worker_without_the_plugin_fails_the_experiment_naming_the_package(
    plugin: Path, client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.level.task import LevelTask

    response = client.post("/experiments", json={"model": "tiny_cnn", "training": FAST})
    assert response.status_code == 201, response.text
    experiment_id = response.json()["id"]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(plugin)])  # not here
    outcome = LevelTask(settings, experiment_id, send_next=lambda: None, device="cpu").run()
    assert outcome.value == "failed"
    with session_scope(settings) as session:
        row = session.get(ExperimentRow, experiment_id)
        assert row is not None
        status, error_type, message = row.status, row.error_type, row.error_message
    assert (status, error_type) == ("failed", "PluginMissing")
    assert message is not None and "\n" not in message and "Traceback" not in message
    assert f"model 'tiny_cnn' (package {PACKAGE})" in message
    assert f"dataset 'blobs' (package {PACKAGE})" in message


def test_the_api_and_lth_registry_import_no_plugin_torch_code(
    plugin_site: Path, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from service.main import create_app\n"
        "from store.settings import Settings\n"
        f"s = Settings(data_dir={str(tmp_path)!r})\n"
        "with TestClient(create_app(s)) as c:\n"
        "    r = c.get('/registry'); assert r.status_code == 200, r.text\n"
        "    assert 'tiny_cnn' in r.text\n"
        "    r = c.post('/experiments', json={'model': 'tiny_cnn'}); assert r.status_code == 201\n"
        "from cli.main import app\n"
        "from typer.testing import CliRunner\n"
        "out = CliRunner().invoke(app, ['registry']).output\n"
        "assert 'lth-example-plugin 0.1.0' in out, out\n"
        "bad = [m for m in ('torch', 'lth_example_plugin.nets', 'lth_example_plugin.data') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_env(plugin_site), capture_output=True, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
