"""The repository on both databases: idempotent creation and level recording, guarded state
changes, owner scoping, UTC timestamps, and ids that cannot escape the data directory."""

from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from test_service_support import claim_running, tiny_spec

from store import artifacts, experiments
from store.db import session_scope
from store.models import Experiment, Level
from store.settings import Settings

# Fixtures (settings, client, pg_database, engine_run) shared by the service tests.
pytest_plugins = ("test_service_support",)

SUMMARY = {
    "weights_remaining": 1.0,
    "early_stop_iteration": 50,
    "early_stop_val_accuracy": 0.9,
    "early_stop_test_accuracy": 0.9,
}


def _create(settings: Settings, **kw) -> str:
    with session_scope(settings) as session:
        experiment, created = experiments.create(session, tiny_spec(), **kw)
        assert created
        return experiment.id


def test_create_is_idempotent_per_owner(settings: Settings) -> None:
    a = _create(settings, idempotency_key="k")
    with session_scope(settings) as session:
        again, created = experiments.create(session, tiny_spec(), idempotency_key="k")
        assert not created and again.id == a
        with pytest.raises(experiments.IdempotencyConflict):
            experiments.create(session, tiny_spec(seed=1), idempotency_key="k")
    b = _create(settings, idempotency_key="k", owner="alice")  # another owner, another key space
    assert b != a
    with pytest.raises(IntegrityError), session_scope(settings) as session:
        # The unique index holds even for NULL owners, which plain UNIQUE would not.
        session.add(Experiment(name="x", status="queued", spec={}, idempotency_key="k"))
        session.flush()


def test_record_level_twice_keeps_one_row_and_updates_the_ticket(settings: Settings) -> None:
    experiment_id = _create(settings)
    with session_scope(settings) as session:
        experiments.record_level(session, experiment_id, 0, SUMMARY)
        experiments.record_level(session, experiment_id, 0, SUMMARY)
        level1 = {**SUMMARY, "weights_remaining": 0.8, "early_stop_val_accuracy": 0.91}
        experiments.record_level(session, experiment_id, 1, level1)
        experiments.record_level(session, experiment_id, 1, level1)
    with session_scope(settings) as session:
        count = session.scalar(select(func.count()).select_from(Level))
        assert count == 2
        experiment = experiments.get(session, experiment_id)
        assert experiment.ticket_level == 1
        assert experiments.ticket_summary(experiment)["weights_remaining"] == 0.8
        nan = {**SUMMARY, "weights_remaining": 0.64, "early_stop_val_loss": float("nan")}
        experiments.record_level(session, experiment_id, 2, nan)  # a diverged run: NaN -> null
    with session_scope(settings) as session:
        experiment = experiments.get(session, experiment_id)
        assert experiment.levels[2].summary["early_stop_val_loss"] is None


def test_final_states_are_final(settings: Settings) -> None:
    experiment_id = _create(settings)
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id, "a")
        assert not experiments.mark_succeeded(session, experiment_id, claim_token="b")
        assert experiments.mark_failed(session, experiment_id, "E", "boom", claim_token="a")
        assert not experiments.mark_succeeded(session, experiment_id)
        assert not claim_running(session, experiment_id)
    with session_scope(settings) as session:
        experiment = experiments.get(session, experiment_id)
        assert experiment.status == "failed" and experiment.claim_token is None
        assert experiment.finished_at.tzinfo is not None
        assert experiment.finished_at.utcoffset() == UTC.utcoffset(None)
        assert experiment.created_at <= experiment.started_at <= experiment.finished_at


def test_owner_scoping(settings: Settings) -> None:
    mine = _create(settings, owner="alice")
    with session_scope(settings) as session:
        assert experiments.get(session, mine, owner="alice") is not None
        assert experiments.get(session, mine, owner="bob") is None
        assert experiments.get(session, mine) is not None  # no owner given: admin view
        assert experiments.request_cancel(session, mine, owner="bob") is None
        assert experiments.list_experiments(session, owner="bob") == ([], 0)


def test_delete_cascades_to_levels(settings: Settings) -> None:
    experiment_id = _create(settings)
    with session_scope(settings) as session:
        experiments.record_level(session, experiment_id, 0, SUMMARY)
        assert not experiments.delete_experiment(session, experiment_id)  # still queued
        experiments.request_cancel(session, experiment_id)
        assert experiments.delete_experiment(session, experiment_id)
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Level)) == 0


@pytest.mark.parametrize(
    "bad", ["../etc", "..", "", "a" * 31, "G" * 32, "g" * 32, "/abs/path", "a" * 32 + "/.."]
)
def test_ids_are_validated_before_paths(bad: str, tmp_path) -> None:
    s = Settings(data_dir=tmp_path)
    with pytest.raises(artifacts.InvalidId):
        artifacts.experiment_dir(s, bad)


def test_paths_follow_the_layout(tmp_path) -> None:
    s = Settings(data_dir=tmp_path)
    i = "0123456789abcdef0123456789abcdef"
    root = tmp_path / "experiments" / i
    assert artifacts.mask_path(s, i, 3) == root / "levels" / "003" / "mask.safetensors"
    assert artifacts.run_path(s, i, 3, "ticket") == root / "levels" / "003" / "runs" / "ticket.json"
    assert artifacts.ticket_path(s, i) == root / "ticket.safetensors"
    with pytest.raises(ValueError):
        artifacts.run_path(s, i, 3, "../x")
    with pytest.raises(ValueError):
        artifacts.mask_path(s, i, -1)
