"""Mistakes caught before they cost (issue 25): a spec estimated above LTH_COST_NOTE_SECONDS is
accepted with a note, POST /experiments/estimate says so without creating anything, and
`lth submit` asks before sending it (unless --yes); `lth run` prints the same note."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from test_service_client import server  # noqa: F401 - the uvicorn fixture
from test_service_support import assert_error, submit, tiny_spec
from typer.testing import CliRunner

from cli.commands import experiments as experiment_commands
from cli.main import app as lth
from lth_core.registry.models.throughput import CPU, GPU
from lth_core.results.prior import cost_note, spec_prior
from lth_core.spec import parse_spec
from store.settings import Settings

pytest_plugins = ("test_service_support",)

NOTE = "this experiment is estimated at about"


def typo_spec(name: str = "typo") -> dict[str, Any]:
    """Conv-2 for 150,000 iterations where 1,500 were meant: about a day on a CPU worker."""
    spec = tiny_spec(name=name, model="conv2")
    spec["dataset"] = {
        "name": "synthetic",
        "validation_size": 200,
        "synthetic": {"input_shape": [3, 32, 32], "train_size": 1000, "test_size": 200},
    }
    spec["training"] = {"iterations": 150_000, "eval_every": 1000}
    return spec


def _listed(client: Any, url: str = "") -> int:
    """How many experiments the server holds (`client`: a TestClient, or httpx with `url`)."""
    return int(client.get(f"{url}/experiments").json()["total"])


@pytest.fixture
def low_limit(settings: Settings) -> Iterator[TestClient]:
    """A server whose note limit (50 ms) the tiny spec (about 0.2 s) is above."""
    from service.consumers import CONSUMERS
    from service.main import create_app

    CONSUMERS.clear()
    with TestClient(create_app(settings.model_copy(update={"cost_note_seconds": 0.05}))) as c:
        yield c


# ------------------------------------------------------------------ the note and the estimate


def test_a_costly_spec_is_accepted_with_a_note_and_a_cheap_one_without(
    client: TestClient,
) -> None:
    typo = submit(client, typo_spec())
    (note,) = [n for n in typo["notes"] if n.startswith(NOTE)]
    assert "training.iterations 150,000, pruning.levels 1" in note
    assert "estimated from conv2's size at about" in note and "on a CPU worker" in note
    assert "above the note limit LTH_COST_NOTE_SECONDS=14400" in note
    assert typo["status"] == "queued"  # a note, not a refusal
    cheap = submit(client)
    assert not any(n.startswith(NOTE) for n in cheap["notes"])


def test_the_estimate_route_foretells_the_submit_and_creates_nothing(client: TestClient) -> None:
    answer = client.post("/experiments/estimate", json=typo_spec())
    assert answer.status_code == 200, answer.text
    found = answer.json()
    expected, _ = spec_prior(parse_spec(typo_spec()), CPU)  # type: ignore[misc]
    assert found["estimate"] == expected and found["estimate"]["iterations"] == 3 * 150_000
    assert found["estimate"]["seconds"] > 4 * 3600
    assert found["above_note_limit"] is True and found["note_limit_seconds"] == 14400
    assert found["spec"]["training"]["iterations"] == 150_000  # defaults filled in
    assert found["spec"]["training"]["batch_size"] == 60
    assert _listed(client) == 0
    assert found["notes"] == submit(client, typo_spec())["notes"]
    cheap = client.post("/experiments/estimate", json=tiny_spec()).json()
    assert cheap["above_note_limit"] is False and cheap["estimate"]["runs"] == 3
    assert not any(n.startswith(NOTE) for n in cheap["notes"])
    # The GPU queue's device class is faster: the same spec is estimated lower there.
    gpu = client.post("/experiments/estimate", json=typo_spec(), params={"queue": "lth.gpu"})
    assert gpu.json()["estimate"]["seconds"] < found["estimate"]["seconds"]
    assert "on a GPU worker" in gpu.json()["estimate"]["basis"]


def test_the_estimate_refuses_what_a_submit_would(client: TestClient) -> None:
    spec = tiny_spec()
    spec["training"] = {"iteratons": 5}
    error = assert_error(client.post("/experiments/estimate", json=spec), 422, "invalid_spec")
    assert error["details"][0]["loc"] == ["body", "training", "iteratons"]
    spec["training"] = {"iterations": 1_000_000}
    assert_error(client.post("/experiments/estimate", json=spec), 422, "limit_exceeded")
    assert_error(
        client.post("/experiments/estimate", json=tiny_spec(), params={"queue": "nowhere"}),
        422,
        "unknown_queue",
    )
    assert _listed(client) == 0


def test_the_limit_setting_moves_the_note(low_limit: TestClient) -> None:
    cheap = submit(low_limit)
    (note,) = [n for n in cheap["notes"] if n.startswith(NOTE)]
    assert "above the note limit LTH_COST_NOTE_SECONDS=0.05;" in note
    assert low_limit.post("/experiments/estimate", json=tiny_spec()).json()["above_note_limit"]


def test_the_note_is_given_above_the_limit_only() -> None:
    spec = parse_spec(tiny_spec())
    _, prior = spec_prior(spec, CPU)  # type: ignore[misc]
    assert cost_note(spec, CPU, prior.seconds) is None  # at the limit: no note
    assert cost_note(spec, CPU, prior.seconds * 0.99, remedy="stop it").endswith("; stop it")
    assert spec_prior(spec, GPU)[1].seconds < prior.seconds  # type: ignore[index]


# ------------------------------------------------------------------ lth submit asks, lth run says


def _submit(url: str, spec_file: Path, *args: str, answer: str | None = None) -> Any:
    return CliRunner().invoke(lth, ["submit", str(spec_file), "--url", url, *args], input=answer)


def test_lth_submit_asks_before_a_costly_spec(
    server: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = server
    spec_file = tmp_path / "typo.json"
    spec_file.write_text(json.dumps(typo_spec()))
    # No terminal (a script, CI): refused at once, naming --yes; nothing created.
    result = _submit(url, spec_file)
    assert result.exit_code == 1
    assert NOTE in result.output and "pass --yes (-y) to submit it anyway" in result.output
    assert _listed(httpx, url) == 0
    # At a terminal: asked, default no.
    monkeypatch.setattr(experiment_commands, "stdin_is_terminal", lambda: True)
    result = _submit(url, spec_file, answer="\n")
    assert result.exit_code == 1, result.output
    assert "submit it anyway? [y/N]" in result.output and "nothing submitted" in result.output
    assert _listed(httpx, url) == 0
    result = _submit(url, spec_file, answer="y\n")
    assert result.exit_code == 0, result.output
    assert "submitted " in result.output and result.output.count(NOTE) == 1  # shown once
    # --yes: no question, the note still printed once the submit has been answered.
    result = _submit(url, spec_file, "--yes")
    assert result.exit_code == 0, result.output
    assert "anyway?" not in result.output and result.output.count(NOTE) == 1
    assert _listed(httpx, url) == 2


def test_lth_submit_sends_a_cheap_spec_without_asking(
    server: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _ = server
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec()))
    result = _submit(url, spec_file)
    assert result.exit_code == 0, result.output
    assert "anyway?" not in result.output and NOTE not in result.output
    # An invalid spec is refused by the estimate with each problem tagged, as the submit did.
    result = _submit(url, spec_file, "--set", "pruning.levels=ten")
    assert result.exit_code == 1
    assert "pruning.levels: must be a whole number, got a string 'ten'  [from --set " in (
        result.output
    )
    assert _listed(httpx, url) == 1


def test_lth_run_prints_the_same_note(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.commands.run import print_cost_note

    print_cost_note(parse_spec(typo_spec()), "cpu")
    err = capsys.readouterr().err
    assert err.startswith(f"note: {NOTE}") and "estimated from conv2's size" in err
    assert "stop it with Ctrl-C" in err
    print_cost_note(parse_spec(tiny_spec()), "cpu")
    assert capsys.readouterr().err == ""
