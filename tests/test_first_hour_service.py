"""A researcher's first hour (issue 15), through the service: the API's error details, short
budgets, list filters, the ETA, resume, and the client commands a user types."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_service_client import server  # noqa: F401 - the uvicorn fixture
from test_service_support import EngineRun, claim_running, finish_like_worker, submit, tiny_spec
from typer.testing import CliRunner

from cli.main import app as lth
from lth_core.results.ticket_rule import choose_ticket
from store import experiments
from store.artifacts import experiment_dir
from store.db import session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)


def _lth(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lth, list(args))
    return result.exit_code, result.output


# ------------------------------------------------------------------ errors, as the CLI words them


def test_spec_errors_in_details_are_worded_as_the_cli_words_them(client: TestClient) -> None:
    spec = tiny_spec()
    spec["training"] = {"iteratons": 5, "learning_rate": "0.01"}
    spec["pruning"] = {"levels": True}
    response = client.post("/experiments", json=spec)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_spec"
    assert "errors.pydantic.dev" not in response.text
    assert error["message"].endswith("(and 2 more problems, in details)")
    lines = {".".join(map(str, d["loc"][1:])): d["msg"] for d in error["details"]}
    assert lines == {
        "training.learning_rate": "must be a number, got a string '0.01' (write 0.01 without "
        "quotes)",
        "training.iteratons": "unknown field; did you mean 'iterations'?",
        "pruning.levels": "must be a whole number, got a boolean true",
    }


def test_a_wrong_model_name_is_the_only_problem(client: TestClient) -> None:
    response = client.post("/experiments", json={"model": "resnet"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert [d["loc"] for d in error["details"]] == [["body", "model"]]  # no "training: required"
    assert "(and" not in error["message"]
    assert "did you mean 'resnet18'?" in error["message"]


def test_a_short_budget_is_accepted_with_the_adapted_defaults_echoed(client: TestClient) -> None:
    response = client.post(
        "/experiments", json={"model": "resnet18", "training": {"iterations": 100}}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["spec"]["training"]["lr_milestones"] == [67, 83]
    assert body["notes"] and "scaled to [67, 83] for iterations 100" in body["notes"][0]


# ------------------------------------------------------------------ list filters


def test_the_list_filters_by_name_and_model(client: TestClient) -> None:
    a = submit(client, tiny_spec(name="cmp-lr-0.01_seed3"))
    b = submit(client, tiny_spec(name="other"))
    c = submit(client, tiny_spec(name="CMP-big", model="conv2"))

    def ids(**params: str) -> set[str]:
        response = client.get("/experiments", params=params)
        assert response.status_code == 200, response.text
        return {e["id"] for e in response.json()["items"]}

    assert ids(name="cmp") == {a["id"], c["id"]}  # any case
    assert ids(name="0.01_s") == {a["id"]}  # _ and % are literal
    assert ids(name="%") == set()
    assert ids(model="conv2") == {c["id"]}
    assert ids(model="lenet_300_100", name="oth") == {b["id"]}
    bad = client.get("/experiments", params={"model": "resnet"})
    assert bad.status_code == 422


# ------------------------------------------------------------------ resume


def _worker(settings: Settings, experiment_id: str) -> str:
    from worker.level.task import LevelTask

    return LevelTask(settings, experiment_id, send_next=lambda: None, device="cpu").run()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_resume_continues_a_cancelled_experiment_from_its_finished_levels(
    client: TestClient, settings: Settings
) -> None:
    pytest.importorskip("torch")
    experiment_id = submit(client)["id"]  # levels 0 and 1
    assert _worker(settings, experiment_id) == "level_done"
    level0 = experiment_dir(settings, experiment_id) / "levels/000/runs/ticket.json"
    before = (level0.read_bytes(), level0.stat().st_mtime_ns)
    client.post(f"/experiments/{experiment_id}/cancel")
    assert _worker(settings, experiment_id) == "cancelled"
    assert client.get(f"/experiments/{experiment_id}").json()["status"] == "cancelled"

    response = client.post(f"/experiments/{experiment_id}/resume")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "queued" and body["progress"]["levels_finished"] == 1
    assert body["error"] is None and not body["cancel_requested"]
    assert _worker(settings, experiment_id) == "succeeded"
    done = client.get(f"/experiments/{experiment_id}").json()
    assert done["status"] == "succeeded" and [lv["level"] for lv in done["levels"]] == [0, 1]
    assert (level0.read_bytes(), level0.stat().st_mtime_ns) == before  # not trained again

    again = client.post(f"/experiments/{experiment_id}/resume")
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "not_resumable"
    assert (
        "only a cancelled or failed experiment can be resumed" in again.json()["error"]["message"]
    )
    assert client.post(f"/experiments/{'0' * 32}/resume").status_code == 404


# ------------------------------------------------------------------ the client, as typed


def test_the_client_commands_a_user_types(
    server: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
    engine_run: EngineRun,
) -> None:
    url, settings = server
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec(name="cmp-lr-0.01-seed3")))

    # submit --set, and its errors worded as `lth run` words them.
    code, out = _lth("submit", str(spec_file), "--url", url, "--set", "training.iteratons=9")
    assert code == 1
    assert "invalid spec (1 problem):" in out
    assert "training.iteratons: unknown field; did you mean 'iterations'?" in out
    code, out = _lth("submit", str(spec_file), "--url", url, "--set", "seed=3")
    assert code == 0, out
    experiment_id = out.split()[1]
    code, out = _lth("status", experiment_id[:8], "--url", url, "--json")
    assert json.loads(out)["spec"]["seed"] == 3  # and a short id is enough

    # lth status while it runs: where it stands, speed, ETA, the table "so far".
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id)
        experiments.record_level(session, experiment_id, 0, engine_run.summaries[0])
        experiments.record_progress(
            session,
            experiment_id,
            {
                "level": 1,
                "kind": "ticket+random_reinit",
                "kinds": ["ticket", "random_reinit"],
                "iteration": 25,
                "iterations": 50,
                "iterations_per_second": 12.5,
                "level_eta_seconds": 2.0,
                "eta_seconds": 62.0,
                "written_at": time.time(),
            },
        )
    code, out = _lth("status", experiment_id, "--url", url)
    assert code == 0, out
    assert "level 1 ticket+random_reinit  iteration 25/50" in out
    assert "12.5 it/s" in out and "level ETA 0:0" in out and "ETA 1:0" in out
    assert "elapsed " in out
    assert "so far (1 of 2 levels; still running)" in out

    # Finished: ls in 80 columns, filters, metrics, delete.
    with session_scope(settings) as session:
        experiments.mark_succeeded(session, experiment_id)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(tiny_spec(name="other")))
    assert _lth("submit", str(other), "--url", url)[0] == 0
    finish_like_worker_files(settings, experiment_id, engine_run)
    code, out = _lth("ls", "--url", url)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    row = next(line for line in out.splitlines() if line.startswith(experiment_id[:8]))
    assert "cmp-lr-0.01-seed3" in row and "succeeded" in row and "2/2" in row
    level = choose_ticket(engine_run.summaries, 0.0)
    ticket = engine_run.summaries[level]
    assert f"{100 * ticket['weights_remaining']:.1f}% L{level}" in row
    assert f"{100 * ticket['early_stop_test_accuracy']:.2f}" in row
    code, out = _lth("ls", "--url", url, "--name", "CMP", "--model", "lenet_300_100")
    assert code == 0 and experiment_id[:8] in out and "other" not in out
    code, out = _lth("ls", "--url", url, "--model", "conv2")
    assert code == 0 and experiment_id[:8] not in out and "0 of 0" in out

    code, out = _lth("metrics", experiment_id, "1", "--url", url)
    assert code == 0, out
    assert "ticket" in out and "random_reinit" in out and "stop it" in out
    ticket_run = json.loads((engine_run.out_dir / "levels/001/runs/ticket.json").read_text())
    assert f"{100 * ticket_run['early_stop_test_accuracy']:.2f}" in out
    code, out = _lth("metrics", experiment_id, "1", "--url", url, "--csv")
    assert code == 0, out
    rows = out.splitlines()
    assert rows[0] == "kind,iteration,train_loss,val_loss,val_accuracy,test_accuracy"
    assert rows[1].startswith("ticket,0,,")  # nothing trained yet: an empty train_loss
    assert any(r.startswith("random_reinit,50,") for r in rows)

    code, out = _lth("delete", experiment_id[:8], "--url", url, "--yes")
    assert code == 0 and f"deleted {experiment_id}" in out
    code, out = _lth("status", experiment_id, "--url", url)
    assert code == 1 and "HTTP 404" in out


def finish_like_worker_files(settings: Settings, experiment_id: str, run: EngineRun) -> None:
    """The artifacts a worker leaves (the rows are recorded by the test itself)."""
    import shutil

    shutil.copytree(run.out_dir, experiment_dir(settings, experiment_id), dirs_exist_ok=True)
    with session_scope(settings) as session:
        for summary in run.summaries:
            experiments.record_level(session, experiment_id, summary["level"], summary)


def test_lth_resume_and_submit_wait_show_progress(
    server: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
    engine_run: EngineRun,
) -> None:
    url, settings = server
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec()))
    code, out = _lth("submit", str(spec_file), "--url", url)
    experiment_id = out.split()[1]
    code, out = _lth("cancel", experiment_id, "--url", url)
    assert code == 0 and "cancelled" in out
    code, out = _lth("resume", experiment_id, "--url", url)
    assert code == 0, out
    assert f"{experiment_id}: queued, continuing after 0 finished levels of 2" in out
    code, out = _lth("resume", experiment_id, "--url", url)
    assert code == 1 and "only a cancelled or failed experiment can be resumed" in out
    finish_like_worker(settings, experiment_id, engine_run)

    def worker() -> None:  # stands in for a worker: progress with an ETA, then done
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queued = [
                e["id"]
                for e in httpx.get(f"{url}/experiments", params={"status": "queued"}).json()[
                    "items"
                ]
            ]
            if queued:
                with session_scope(settings) as session:
                    claim_running(session, queued[0])
                    experiments.record_progress(
                        session,
                        queued[0],
                        {
                            "level": 0,
                            "kind": "ticket",
                            "iteration": 25,
                            "iterations": 50,
                            "iterations_per_second": 20.0,
                            "level_eta_seconds": 1.25,
                            "eta_seconds": 6.25,
                            "written_at": time.time(),
                        },
                    )
                time.sleep(0.6)
                finish_files_and_rows(settings, queued[0], engine_run)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=worker)
    thread.start()
    code, out = _lth("submit", str(spec_file), "--url", url, "--wait", "--interval", "0.1")
    thread.join()
    assert code == 0, out
    waiting = [line for line in out.splitlines() if "level 0 ticket" in line]
    assert waiting and "20.0 it/s  level ETA 0:01  ETA 0:0" in waiting[0], out
    assert "iteration 25/50" in waiting[0] and "elapsed " in waiting[0]
    assert "status succeeded" in out and "winning ticket" in out


def finish_files_and_rows(settings: Settings, experiment_id: str, run: EngineRun) -> None:
    finish_like_worker_files(settings, experiment_id, run)
    with session_scope(settings) as session:
        assert experiments.mark_succeeded(session, experiment_id)
