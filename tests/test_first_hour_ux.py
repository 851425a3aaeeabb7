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
from test_service_support import assert_error, submit, tiny_spec
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
