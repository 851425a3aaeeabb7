"""The first hour's rough edges (issue 25), through the service: short ids in every route and
in a spec's mask reference, an identical spec refused unless asked for again, `lth submit`'s
errors tagged with the input that gave them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_service_client import server  # noqa: F401 - the uvicorn fixture
from test_service_support import (
    EngineRun,
    assert_error,
    claim_running,
    submit,
    tiny_spec,
)
from typer.testing import CliRunner

from cli.main import app as lth
from store import experiments, short_ids
from store.db import session_scope
from store.models import Experiment, utcnow
from store.settings import Settings

pytest_plugins = ("test_service_support",)


def _lth(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lth, list(args))
    return result.exit_code, result.output


@pytest.fixture
def strict(settings: Settings) -> Iterator[TestClient]:
    """A client of a server with the default rule: identical specs refused (the suite's
    conftest allows them for every other test)."""
    from service.consumers import CONSUMERS
    from service.main import create_app

    CONSUMERS.clear()
    with TestClient(create_app(settings.model_copy(update={"allow_duplicate_specs": False}))) as c:
        yield c


def _insert(settings: Settings, experiment_id: str, name: str = "twin") -> None:
    """An experiment row with a chosen id (to make two ids share a start)."""
    with session_scope(settings) as session:
        now = utcnow()
        session.add(
            Experiment(
                id=experiment_id,
                name=name,
                status="failed",
                spec=tiny_spec(name=name),
                progress={},
                cancel_requested=False,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )


# ------------------------------------------------------------------ short ids


def test_a_short_id_names_the_experiment_in_every_route(
    client: TestClient, settings: Settings
) -> None:
    e = submit(client)
    short = e["id"][:8]
    assert client.get(f"/experiments/{short}").json()["id"] == e["id"]
    assert client.get(f"/experiments/{short.upper()}").json()["id"] == e["id"]
    assert client.get(f"/experiments/{e['id'][:13]}").json()["id"] == e["id"]
    assert client.get(f"/compare?ids={short}").json()["experiments"][0]["id"] == e["id"]
    cancelled = client.post(f"/experiments/{short}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(f"/experiments/{short}/resume").status_code == 200
    # Seven digits are not an id; an unknown start is a plain 404.
    assert_error(client.get(f"/experiments/{e['id'][:7]}"), 404, "not_found")
    unknown = "f" * 8 if not e["id"].startswith("ffffffff") else "0" * 8
    error = assert_error(client.get(f"/experiments/{unknown}"), 404, "not_found")
    assert unknown in error["message"]


def test_an_ambiguous_short_id_lists_the_candidates(client: TestClient, settings: Settings) -> None:
    _insert(settings, "abcdef12" + "0" * 24, "first")
    _insert(settings, "abcdef12" + "1" * 24, "second")
    error = assert_error(client.get("/experiments/abcdef12"), 404, "ambiguous_id")
    assert "abcdef12 is the start of several experiment ids" in error["message"]
    assert "first" in error["message"] and "second" in error["message"]
    assert {d["msg"].split()[0] for d in error["details"]} == {
        "abcdef12" + "0" * 24,
        "abcdef12" + "1" * 24,
    }
    # One more digit is enough.
    assert client.get("/experiments/abcdef121").json()["name"] == "second"
    with session_scope(settings) as session, pytest.raises(short_ids.AmbiguousId):
        short_ids.resolve(session, "abcdef12", owner=None)


def test_a_short_id_is_resolved_among_the_callers_experiments_only(
    client: TestClient, settings: Settings
) -> None:
    _insert(settings, "abcdef12" + "0" * 24, "mine")
    with session_scope(settings) as session:
        row = experiments.get(session, "abcdef12" + "0" * 24)
        assert row is not None
        row.owner = "someone-else"
    with session_scope(settings) as session:
        assert short_ids.resolve(session, "abcdef12", owner="me") is None
        assert short_ids.resolve(session, "abcdef12", owner="someone-else") == "abcdef12" + "0" * 24


def test_a_mask_reference_takes_a_short_id(client: TestClient, settings: Settings) -> None:
    source = submit(client)
    spec = tiny_spec(mask={"experiment_id": source["id"][:8], "level": 0})
    response = client.post("/experiments", json=spec)
    # The reference is resolved: the answer is about the source's level, not "no experiment".
    error = assert_error(response, 409, "mask_level_not_finished")
    assert source["id"] in error["message"]
    rest = "0" * 24 if source["id"][8:] != "0" * 24 else "1" * 24
    _insert(settings, source["id"][:8] + rest, "other")
    ambiguous = assert_error(client.post("/experiments", json=spec), 404, "ambiguous_id")
    assert ambiguous["message"].startswith("mask.experiment_id: ")
    assert ambiguous["details"][0]["loc"] == ["body", "mask", "experiment_id"]


# ------------------------------------------------------------------ duplicate specs


def test_the_same_spec_twice_is_refused_unless_asked_again(strict: TestClient) -> None:
    first = submit(strict, tiny_spec(name="dup"))
    error = assert_error(strict.post("/experiments", json=tiny_spec(name="dup")), 409)
    assert error["type"] == "duplicate_spec"
    assert first["id"][:8] in error["message"] and "?again=true" in error["message"]
    assert error["details"][0]["msg"] == f"same spec as experiment {first['id']}"
    # Defaults filled in are the same spec: writing a default out changes nothing.
    spelled = tiny_spec(name="dup", seed=first["spec"]["seed"])
    assert_error(strict.post("/experiments", json=spelled), 409, "duplicate_spec")
    # Asked for again, or a different spec, or the first one cancelled: accepted.
    assert strict.post("/experiments?again=true", json=tiny_spec(name="dup")).status_code == 201
    assert strict.post("/experiments", json=tiny_spec(name="dup", seed=7)).status_code == 201
    other = submit(strict, tiny_spec(name="dup2"))
    strict.post(f"/experiments/{other['id']}/cancel")
    assert strict.post("/experiments", json=tiny_spec(name="dup2")).status_code == 201
    # A retry with the first submit's Idempotency-Key is a replay, not a duplicate.
    keyed = strict.post("/experiments", json=tiny_spec(name="k"), headers={"Idempotency-Key": "k1"})
    replay = strict.post(
        "/experiments", json=tiny_spec(name="k"), headers={"Idempotency-Key": "k1"}
    )
    assert replay.status_code == 201 and replay.json()["id"] == keyed.json()["id"]


def test_lth_submit_again_and_short_ids_on_the_command_line(
    server: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _ = server
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec(name="twice")))
    code, out = _lth("submit", str(spec_file), "--url", url)
    assert code == 0, out
    first = out.split()[1]
    # The uvicorn fixture's settings come from the environment (duplicates allowed): the
    # CLI's --again is then a no-op that must still be accepted.
    code, out = _lth("submit", str(spec_file), "--url", url, "--again")
    assert code == 0, out
    code, out = _lth("status", first[:8], "--url", url, "--json")
    assert code == 0 and json.loads(out)["id"] == first
    code, out = _lth("delete", first[:8], "--url", url, "--yes")
    assert code == 1 and "only succeeded, failed or cancelled" in out


def test_lth_submit_tags_each_problem_with_its_input(
    server: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _ = server
    spec_file = tmp_path / "spec.json"
    spec = tiny_spec()
    spec["training"] = {"iteratons": 5, "learning_rate": "0.01"}
    spec_file.write_text(json.dumps(spec))
    code, out = _lth("submit", str(spec_file), "--url", url, "--set", "pruning.levels=ten")
    assert code == 1
    assert "invalid spec (3 problems):" in out
    lines = out.splitlines()
    assert (
        f"  training.iteratons: unknown field; did you mean 'iterations'?  [in {spec_file}]"
        in lines
    )
    assert (
        "  pruning.levels: must be a whole number, got a string 'ten'  [from --set "
        "pruning.levels=ten]" in lines
    )


# ------------------------------------------------------------------ limits, one message


@pytest.mark.parametrize("iterations", [100_000_000, 1_000_000, 1e8])
def test_every_iteration_limit_is_worded_alike(client: TestClient, iterations: float) -> None:
    spec = tiny_spec()
    spec["training"] = {"iterations": iterations, "eval_every": 25}
    error = assert_error(client.post("/experiments", json=spec), 422, "limit_exceeded")
    shown = f"{int(iterations):,}"
    assert error["details"][0]["msg"] == (
        f"training.iterations is {shown}; the limit is 250,000 (LTH_MAX_ITERATIONS)"
    )


def test_the_engines_own_bound_is_worded_as_a_limit_too(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec = tiny_spec()
    spec["training"] = {"iterations": 100_000_000}
    spec_file.write_text(json.dumps(spec))
    code, out = _lth("run", str(spec_file), "-o", str(tmp_path / "out"))
    assert code == 2
    assert "training.iterations: is 100,000,000; the limit is 10,000,000" in out


def test_lth_delete_asks_unless_yes(server: tuple[str, Settings]) -> None:  # noqa: F811
    url, _ = server
    e = httpx.post(f"{url}/experiments", json=tiny_spec(name="to-delete")).json()
    httpx.post(f"{url}/experiments/{e['id']}/cancel")
    result = CliRunner().invoke(lth, ["delete", e["id"][:8], "--url", url], input="n\n")
    assert result.exit_code == 1
    assert f"delete {e['id'][:8]} (to-delete, cancelled, 0 levels finished)" in result.output
    assert "nothing deleted" in result.output
    assert httpx.get(f"{url}/experiments/{e['id']}").status_code == 200
    result = CliRunner().invoke(lth, ["delete", e["id"][:8], "--url", url], input="y\n")
    assert result.exit_code == 0 and f"deleted {e['id']}" in result.output
    assert httpx.get(f"{url}/experiments/{e['id']}").status_code == 404
    e = httpx.post(f"{url}/experiments", json=tiny_spec(name="to-delete")).json()
    httpx.post(f"{url}/experiments/{e['id']}/cancel")
    code, out = _lth("delete", e["id"][:8], "--url", url, "--yes")
    assert code == 0 and f"deleted {e['id']}" in out


# ------------------------------------------------------------------ a cost estimate up front


def test_a_new_experiment_has_a_cost_estimate_before_its_first_level(client: TestClient) -> None:
    from lth_core.registry.models.throughput import CPU, training_seconds
    from lth_core.spec import parse_spec
    from service.spec_limits import total_iterations

    e = submit(client)
    rest = e["cost"]["remaining_estimate"]
    spec = parse_spec(e["spec"])
    assert rest["runs"] == 3  # level 0's ticket, level 1's ticket and random_reinit
    assert rest["iterations"] == total_iterations(spec) == 150  # every run trains 50
    prior = training_seconds(spec, 150, 3, CPU)
    assert prior is not None and rest["seconds"] == pytest.approx(prior.seconds, abs=0.05)
    assert rest["basis"].startswith("estimated from lenet_300_100's size at about")
    assert "measured speeds replace it" in rest["basis"]
    assert client.get(f"/experiments/{e['id']}").json()["cost"] == e["cost"]
    # A typo of 150,000 for 1,500 iterations of Conv-2 costs a hundred times more: a note.
    spec_json = tiny_spec(name="typo", model="conv2")
    spec_json["dataset"] = {
        "name": "synthetic",
        "validation_size": 200,
        "synthetic": {"input_shape": [3, 32, 32], "train_size": 1000, "test_size": 200},
    }
    spec_json["training"] = {"iterations": 150_000, "eval_every": 1000}
    typo = submit(client, spec_json)
    seconds = typo["cost"]["remaining_estimate"]["seconds"]
    assert seconds > 4 * 3600
    note = next(n for n in typo["notes"] if n.startswith("this experiment is estimated at about"))
    assert "training.iterations 150,000, pruning.levels 1" in note
    assert "conv2's size" in note
    assert not any("estimated at" in n for n in e["notes"])


def test_the_prior_follows_the_model_and_the_device_class() -> None:
    from lth_core.registry.models.sizes import model_size
    from lth_core.registry.models.throughput import CPU, GPU, about, training_seconds
    from lth_core.spec import parse_spec

    # 6 x macs x batch: the FLOP counts bench/results/speed.md measured against.
    assert 6 * model_size("lenet_300_100", (1, 28, 28), 10).macs * 60 == 95_832_000  # type: ignore[union-attr]
    assert 6 * model_size("conv2", (3, 32, 32), 10).macs * 60 == 15_761_018_880  # type: ignore[union-attr]
    lenet = parse_spec({"model": "lenet_300_100"})
    conv2 = parse_spec({"model": "conv2"})
    cpu_lenet = training_seconds(lenet, 1000, 1, CPU)
    cpu_conv2 = training_seconds(conv2, 1000, 1, CPU)
    gpu_conv2 = training_seconds(conv2, 1000, 1, GPU)
    assert cpu_lenet and cpu_conv2 and gpu_conv2
    assert 500 < 1 / cpu_lenet.step_seconds < 1500  # bench: 954 it/s
    assert 2 < 1 / cpu_conv2.step_seconds < 10  # bench: 5 it/s
    assert gpu_conv2.seconds < cpu_conv2.seconds / 20
    assert [about(s) for s in (0.2, 40, 155.3, 5400, 8000)] == [
        "about 1 s",
        "about 40 s",
        "about 3 min",
        "about 1 h 30 min",
        "about 2 h 13 min",
    ]


# ------------------------------------------------------------------ ETags of a running experiment


def test_a_heartbeat_does_not_change_a_running_experiments_etag(
    client: TestClient, settings: Settings
) -> None:
    from store import claims

    e = submit(client)
    with session_scope(settings) as session:
        assert claim_running(session, e["id"], "w")
    first = client.get(f"/experiments/{e['id']}")
    etag = first.headers["ETag"]
    for _ in range(3):
        with session_scope(settings) as session:
            assert claims.heartbeat(session, e["id"], "w")
        again = client.get(f"/experiments/{e['id']}", headers={"If-None-Match": etag})
        assert again.status_code == 304
    # What a user sees does change it.
    with session_scope(settings) as session:
        experiments.record_progress(session, e["id"], {"level": 0, "iteration": 10})
    moved = client.get(f"/experiments/{e['id']}", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag


# ------------------------------------------------------------------ the contract of the stream


def _events(text: str) -> list[dict[str, str]]:
    """Server-sent events as schemathesis parses them (blocks without data are skipped)."""
    out = []
    for block in text.split("\n\n"):
        event: dict[str, str] = {}
        for line in block.splitlines():
            field, _, value = line.partition(":")
            if field in ("event", "data", "id", "retry"):
                event[field] = value.removeprefix(" ")
        if "data" in event:
            out.append(event)
    return out


def test_every_event_of_the_stream_matches_the_published_schema(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    import yaml
    from jsonschema import Draft202012Validator

    from service.openapi import OPENAPI_PATH

    doc = yaml.safe_load(OPENAPI_PATH.read_text())
    op = doc["paths"]["/experiments/{experiment_id}/events"]["get"]
    schema = op["responses"]["200"]["content"]["text/event-stream"]["schema"]
    components = {"components": doc["components"]}
    one_event = Draft202012Validator({**schema, **components})
    payloads = {
        branch["properties"]["event"]["const"]: Draft202012Validator(
            {**branch["properties"]["data"]["contentSchema"], **components}
        )
        for branch in schema["oneOf"]
    }
    e = submit(client)
    with session_scope(settings) as session:
        assert claim_running(session, e["id"])
        experiments.record_progress(
            session, e["id"], {"level": 1, "kind": "ticket", "iteration": 3}
        )
        for summary in engine_run.summaries:  # then as the worker finishes it
            experiments.record_level(session, e["id"], summary["level"], summary)
        assert experiments.mark_succeeded(session, e["id"])
    with client.stream("GET", f"/experiments/{e['id'][:8]}/events") as response:
        assert response.status_code == 200
        events = _events(response.read().decode())
    names = [event["event"] for event in events]
    assert names[0] == "status" and names[-1] == "end" and names.count("level") == 2
    for event in events:
        assert not list(one_event.iter_errors(event)), event
        payload = json.loads(event["data"])
        assert not list(payloads[event["event"]].iter_errors(payload)), (event["event"], payload)
    # A plain string, as the contract used to say, is no event.
    assert list(one_event.iter_errors({"event": "status"}))
    assert list(one_event.iter_errors({"event": "bogus", "data": "{}"}))


# ------------------------------------------------------------------ runs across experiments


def test_lth_runs_sorts_every_run_across_experiments(
    server: tuple[str, Settings],  # noqa: F811
    engine_run: EngineRun,
) -> None:
    import csv
    import io

    from test_service_support import finish_like_worker

    url, settings = server
    ids = []
    for name in ("runs-a", "runs-b"):
        e = httpx.post(f"{url}/experiments", json=tiny_spec(name=name)).json()
        finish_like_worker(settings, e["id"], engine_run)
        ids.append(e["id"][:8])
    code, out = _lth("runs", "--url", url, "--sort", "test", "--desc", "--csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    # Two experiments x (level 0's ticket + level 1's ticket and random_reinit).
    assert len(rows) == 6
    assert {r["id"] for r in rows} == set(ids)
    assert sorted(r["run"] for r in rows) == ["random_reinit"] * 2 + ["ticket"] * 4
    tests = [float(r["test"]) for r in rows]
    assert tests == sorted(tests, reverse=True)
    level1 = engine_run.summaries[1]
    ticket1 = next(r for r in rows if r["level"] == "1" and r["run"] == "ticket")
    assert float(ticket1["weights"]) == round(100 * level1["weights_remaining"], 2)
    code, out = _lth("runs", "--url", url, "--sort", "weights")
    assert code == 0 and "6 runs of 2 experiments, by weights % ↑" in out
    code, out = _lth("runs", "--url", url, "--sort", "bogus")
    assert code == 1 and "sort by one of id, name, level" in out


def test_statuses_read_as_sentences(client: TestClient) -> None:
    from store.status import stands

    assert [stands(s) for s in ("queued", "running", "succeeded", "failed", "cancelled")] == [
        "is queued",
        "is running",
        "has succeeded",
        "has failed",
        "was cancelled",
    ]
    e = submit(client)
    error = assert_error(client.post(f"/experiments/{e['id']}/resume"), 409, "not_resumable")
    assert f"experiment {e['id']} is queued; only a cancelled or failed" in error["message"]
    client.post(f"/experiments/{e['id']}/cancel")
    assert client.delete(f"/experiments/{e['id'][:8]}").status_code == 204
