"""The ticket through the API under issue 27's rule: never the dense network, "no winning ticket"
with its reason and a `no_ticket` download when no pruned level qualifies, `ticket_not_final`
while the experiment runs unless asked for as provisional (and then the file says so)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open
from test_service_support import EngineRun, assert_error, claim_running, submit, tiny_spec

from store import experiments
from store.db import session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)


def _crafted(level: int, val: float) -> dict[str, Any]:
    """A level summary as the engine writes it, one trial of 5,000 validation examples."""
    run = {
        "run": "ticket",
        "trial": 0,
        "repeat": 0,
        "weights_remaining": 0.8**level,
        "early_stop_iteration": 500,
        "early_stop_val_accuracy": val,
        "early_stop_test_accuracy": val,
        "val_examples": 5000,
    }
    return {
        "level": level,
        "weights_remaining": 0.8**level,
        "early_stop_iteration": 500,
        "early_stop_val_loss": 0.3,
        "early_stop_test_accuracy": val,
        "final_test_accuracy": val,
        "early_stop_val_accuracy": val,
        "controls": {},
        "runs": {"ticket": [run]},
    }


def test_no_qualifying_level_is_no_winning_ticket_everywhere(
    client: TestClient, settings: Settings
) -> None:
    experiment_id = submit(client, tiny_spec())["id"]
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id)
        experiments.record_level(session, experiment_id, 0, _crafted(0, 0.90))
        experiments.record_level(session, experiment_id, 1, _crafted(1, 0.80))
    # Running: the download is refused as not final first; asked for as provisional, there is
    # none to give (409: a later level cannot change that level 1 failed, but the run goes on).
    assert_error(client.get(f"/experiments/{experiment_id}/ticket"), 409, "ticket_not_final")
    error = assert_error(
        client.get(f"/experiments/{experiment_id}/ticket?provisional=true"), 409, "no_ticket"
    )
    assert "no winning ticket" in error["message"]
    with session_scope(settings) as session:
        assert experiments.mark_succeeded(session, experiment_id)
    body = client.get(f"/experiments/{experiment_id}").json()
    assert body["ticket"] is None
    decision = body["ticket_decision"]
    assert decision["level"] is None and decision["verdict"] is None
    assert decision["reason"].startswith("no winning ticket: level 1 below the dense network")
    level1 = decision["levels"][1]
    assert level1["verdict"] == "no"
    accuracy = level1["comparisons"]["matches_dense_accuracy"]
    assert accuracy["interval"][1] < 0 and accuracy["confidence"] == 0.95
    assert decision["levels"][0]["verdict"] is None  # the dense network: never the ticket
    error = assert_error(client.get(f"/experiments/{experiment_id}/ticket"), 404, "no_ticket")
    assert "level 1 below the dense network" in error["message"]


def test_a_running_experiment_s_ticket_is_not_final_unless_provisional(
    client: TestClient, settings: Settings, engine_run: EngineRun, tmp_path: Path
) -> None:
    from store.artifacts import experiment_dir

    experiment_id = submit(client, tiny_spec())["id"]
    import shutil

    shutil.copytree(engine_run.out_dir, experiment_dir(settings, experiment_id), dirs_exist_ok=True)
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id)
        for summary in engine_run.summaries:
            experiments.record_level(session, experiment_id, summary["level"], summary)
    body = client.get(f"/experiments/{experiment_id}").json()
    if body["ticket"] is None:
        pytest.skip("the tiny run has no winning ticket to serve (its level 1 failed)")
    assert body["ticket"]["level"] > 0  # a pruned level, never the dense network
    error = assert_error(
        client.get(f"/experiments/{experiment_id}/ticket"), 409, "ticket_not_final"
    )
    assert "provisional=true" in error["message"]
    response = client.get(f"/experiments/{experiment_id}/ticket?provisional=true")
    assert response.status_code == 200
    path = tmp_path / "ticket.safetensors"
    path.write_bytes(response.content)
    with safe_open(path, framework="numpy") as fh:
        metadata = fh.metadata()
    # The engine marks a ticket written before its last level provisional; this one was
    # written at the end of the run it was copied from.
    assert metadata["provisional"] == "false"
    assert int(metadata["level"]) == body["ticket"]["level"]
    assert_error(client.get(f"/experiments/{experiment_id}/ticket?provisional=maybe"), 422, None)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_engine_marks_a_ticket_written_before_the_last_level_provisional(
    tmp_path: Path,
) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec

    spec = parse_spec({**tiny_spec(), "pruning": {"levels": 2}})
    experiment = Experiment(spec, tmp_path / "out", device="cpu")
    seen = []
    for level in experiment.levels:
        experiment.prepare_level(level)
        experiment.train_runs(level)
        experiment.finish_level(level)
        results = json.loads(experiment.layout.results.read_text())
        ticket = experiment.layout.ticket
        assert results["ticket_level"] != 0  # never the dense network
        if results["ticket_level"] is None:
            assert not ticket.exists()
            continue
        with safe_open(str(ticket), framework="numpy") as fh:
            seen.append((level, fh.metadata()["provisional"]))
    for level, provisional in seen:
        assert provisional == ("true" if level < 2 else "false")
