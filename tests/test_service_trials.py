"""An experiment with trials through the API: every trial's runs in a level's metrics, its
figures and its progress, named by the one run-id grammar (lth_core.runs); and GET /meta,
where clients read the status values and that grammar instead of hard-coding them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_service_support import (
    TINY_SPEC,
    EngineRun,
    claim_running,
    finish_like_worker,
    run_engine,
    submit,
    tiny_spec,
)

from lth_core.runs import RUN_ID_PATTERN, is_run_id
from store import experiments
from store.db import session_scope
from store.settings import Settings
from store.status import ACTIVE_STATUSES, STATUS_VALUES

pytest_plugins = ("test_service_support",)

TRIALS_SPEC = {**TINY_SPEC, "trials": 2}
LEVEL1_RUNS = {"ticket", "ticket.t1", "random_reinit", "random_reinit.t1"}


@pytest.fixture(scope="module")
def trials_run(tmp_path_factory: pytest.TempPathFactory) -> EngineRun:
    """lth_core's engine once on a 2-trial tiny spec (seconds on CPU)."""
    return run_engine(TRIALS_SPEC, tmp_path_factory.mktemp("trials") / "out")


def test_trial_runs_are_on_disk_as_the_grammar_names_them(trials_run: EngineRun) -> None:
    names = {p.stem for p in (Path(trials_run.out_dir) / "levels/001/runs").glob("*.json")}
    assert names == LEVEL1_RUNS and all(is_run_id(n) for n in names)


def test_level_metrics_and_figures_carry_every_trial(
    client: TestClient, settings: Settings, trials_run: EngineRun
) -> None:
    experiment_id = submit(client, tiny_spec(trials=2))["id"]
    finish_like_worker(settings, experiment_id, trials_run)

    level1 = client.get(f"/experiments/{experiment_id}/levels/1/metrics").json()
    assert set(level1["runs"]) == LEVEL1_RUNS
    assert all(run["curve"] for run in level1["runs"].values())
    level0 = client.get(f"/experiments/{experiment_id}/levels/0/metrics").json()
    assert set(level0["runs"]) == {"ticket", "ticket.t1"}

    figure = client.get(
        f"/experiments/{experiment_id}/plots/accuracy_curves.json", params={"levels": "0,1"}
    )
    assert figure.status_code == 200, figure.text
    rows = figure.json()["data"]["values"]
    kinds = {(r["level"], r["kind"]) for r in rows}
    assert kinds == {(0, "ticket"), (1, "ticket"), (1, "random_reinit")}
    # Each point is the mean over both trials' runs of its kind, not trial 0's alone.
    assert rows and all(r["n"] == 2 for r in rows)


def test_a_stray_file_in_the_runs_folder_is_not_a_run(
    client: TestClient, settings: Settings, trials_run: EngineRun
) -> None:
    experiment_id = submit(client, tiny_spec(trials=2))["id"]
    finish_like_worker(settings, experiment_id, trials_run)
    runs = settings.experiments_dir / experiment_id / "levels/001/runs"
    shutil.copy(runs / "ticket.json", runs / "Not A Run.json")
    shutil.copy(runs / "ticket.json", runs / "ticket.t1.json.bak")
    level1 = client.get(f"/experiments/{experiment_id}/levels/1/metrics").json()
    assert set(level1["runs"]) == LEVEL1_RUNS


def test_progress_lists_the_runs_of_the_level_being_trained(
    client: TestClient, settings: Settings
) -> None:
    experiment_id = submit(client, tiny_spec(trials=2))["id"]
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id)
        experiments.record_progress(
            session,
            experiment_id,
            {"level": 1, "kind": "ticket.t1", "iteration": 25, "iterations": 50},
        )
    progress = client.get(f"/experiments/{experiment_id}").json()["progress"]
    assert progress["kind"] == "ticket.t1"
    assert progress["runs"] == ["ticket", "ticket.t1", "random_reinit", "random_reinit.t1"]


def test_meta_gives_the_statuses_and_the_run_id_pattern(client: TestClient) -> None:
    response = client.get("/meta")
    assert response.status_code == 200
    body = response.json()
    assert body["statuses"] == list(STATUS_VALUES)
    assert set(body["active_statuses"]) == set(ACTIVE_STATUSES)
    assert body["run_id_pattern"] == RUN_ID_PATTERN
    pattern = re.compile(body["run_id_pattern"])
    for good in ("ticket", "ticket.t1", "random_reinit.t1.r2"):
        assert pattern.fullmatch(good)
    for bad in ("Ticket", "ticket.t0", "../ticket", "ticket.json"):
        assert not pattern.fullmatch(bad)
