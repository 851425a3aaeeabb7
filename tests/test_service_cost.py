"""GET /experiments/{id} shows what an experiment cost, its time to ticket and, with verify,
whether the final mask was verified (issue 12), from the level summaries a worker records."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_service_support import claim_running, submit, tiny_spec

from store import experiments
from store.db import session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)


def _level(
    level: int, accuracy: float, remaining: float, iterations: int, seconds: float
) -> dict[str, Any]:
    return {
        "level": level,
        "weights_remaining": remaining,
        "early_stop_iteration": 100,
        "early_stop_val_loss": 0.5,
        "early_stop_val_accuracy": accuracy,  # what the ticket rule compares (issue 11)
        "val_examples": 5000,  # one unit: its interval needs the example count (issue 27)
        "early_stop_test_accuracy": accuracy,
        "final_test_accuracy": accuracy,
        "controls": {},
        "layers": {},
        "cost": {
            "iterations": iterations,
            "seconds": seconds,
            "runs": 1,
            "devices": ["cpu"],
            "threads": [1],
        },
    }


@pytest.mark.parametrize("final_accuracy", [0.95, 0.80])
def test_cost_time_to_ticket_and_verification_in_the_experiment(
    client: TestClient, settings: Settings, final_accuracy: float
) -> None:
    spec = tiny_spec(
        pruning={"levels": 2},
        verify={"repeats": 1},
        controls=["random_reinit"],
        controls_at="ticket_level",
    )
    experiment = submit(client, spec)
    body = client.get(f"/experiments/{experiment['id']}").json()
    # Before any level: an estimate from the model's size (service.cost_estimate), said so.
    prior = body["cost"].pop("remaining_estimate")
    assert body["cost"] == {"iterations": 0, "seconds": 0.0, "levels": 0, "kinds": {}}
    assert (prior["runs"], prior["iterations"]) == (4, 200)  # controls at level 2 only
    assert prior["basis"].startswith("estimated from lenet_300_100's size")
    with session_scope(settings) as session:
        assert claim_running(session, experiment["id"])
        experiments.record_level(session, experiment["id"], 0, _level(0, 0.90, 1.0, 50, 2.0))
        experiments.record_level(session, experiment["id"], 1, _level(1, 0.99, 0.8, 30, 1.0))
    body = client.get(f"/experiments/{experiment['id']}").json()
    # Two runs done (50 + 30 iterations, 3 s); level 2 has the ticket and its control to go.
    assert body["cost"] == {
        "iterations": 80,
        "seconds": 3.0,
        "levels": 2,
        "kinds": {},
        "remaining_estimate": {
            "runs": 2,
            "iterations": 80,
            "seconds": 3.0,
            "basis": "measured: the mean cost per run of the finished levels, times the runs left",
        },
    }
    assert body["ticket"] is None and body["time_to_ticket"] is None and body["verified"] is None
    assert body["levels"][1]["cost"]["iterations"] == 30
    with session_scope(settings) as session:
        final = {**_level(2, final_accuracy, 0.64, 100, 4.0), "verification": True}
        experiments.record_level(session, experiment["id"], 2, final)
    body = client.get(f"/experiments/{experiment['id']}").json()
    assert body["cost"]["iterations"] == 180 and body["cost"]["remaining_estimate"]["runs"] == 0
    assert body["levels"][2]["verification"] is True
    if final_accuracy >= 0.90:
        assert body["verified"] is True and body["ticket"]["level"] == 2
        assert body["time_to_ticket"] is not None and body["time_to_ticket"] >= 0.0
    else:  # the cheap level 1 was better than dense, but only a verified level is a ticket
        assert body["verified"] is False and body["ticket"] is None
        assert body["time_to_ticket"] is None
