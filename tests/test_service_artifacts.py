"""Finished levels through the API: levels and ticket in the experiment, curves, mask and
ticket downloads, and mask reuse. The artifacts come from one real run of lth_core's engine,
placed and recorded the way the worker does it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import load_file
from test_service_support import (
    EngineRun,
    assert_error,
    claim_running,
    finish_like_worker,
    submit,
    tiny_spec,
)

from store import artifacts, experiments
from store.db import session_scope
from store.settings import Settings

# Fixtures (settings, client, pg_database, engine_run) shared by the service tests.
pytest_plugins = ("test_service_support",)


def _finished(client: TestClient, settings: Settings, run: EngineRun) -> str:
    experiment_id = submit(client, tiny_spec())["id"]
    finish_like_worker(settings, experiment_id, run)
    return experiment_id


def test_finished_experiment_shows_levels_and_ticket(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = _finished(client, settings, engine_run)
    body = client.get(f"/experiments/{experiment_id}").json()
    assert body["status"] == "succeeded" and body["finished_at"] is not None
    assert [lv["level"] for lv in body["levels"]] == [0, 1]
    assert body["progress"]["levels_finished"] == body["progress"]["levels"] == 2
    level1 = body["levels"][1]
    engine1 = engine_run.summaries[1]
    for field in ("weights_remaining", "early_stop_iteration", "early_stop_test_accuracy"):
        assert level1[field] == engine1[field]
    assert set(level1["controls"]) == {"random_reinit"}
    assert body["levels"][0]["controls"] == {}
    ticket = body["ticket"]
    from lth_core.results.ticket_rule import choose_ticket

    assert ticket["level"] == choose_ticket(engine_run.summaries, 0.0)
    assert ticket["url"] == f"/experiments/{experiment_id}/ticket"


def test_metrics_are_the_runs_curves(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = _finished(client, settings, engine_run)
    metrics = client.get(f"/experiments/{experiment_id}/levels/1/metrics").json()
    assert metrics["finished"] is True and set(metrics["runs"]) == {"ticket", "random_reinit"}
    on_disk = json.loads(
        artifacts.run_path(settings, experiment_id, 1, "random_reinit").read_text()
    )
    served = metrics["runs"]["random_reinit"]
    assert [p["iteration"] for p in served["curve"]] == [p["iteration"] for p in on_disk["curve"]]
    assert served["curve"][-1]["test_accuracy"] == on_disk["curve"][-1]["test_accuracy"]
    assert served["early_stop_iteration"] == on_disk["early_stop_iteration"]
    level0 = client.get(f"/experiments/{experiment_id}/levels/0/metrics").json()
    assert set(level0["runs"]) == {"ticket"}
    assert_error(client.get(f"/experiments/{experiment_id}/levels/2/metrics"), 404, "no_such_level")
    # A level the experiment does not have is a 404 whatever the number (issue 6).
    assert_error(
        client.get(f"/experiments/{experiment_id}/levels/-1/metrics"), 404, "no_such_level"
    )


def test_mask_download_matches_the_level(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = _finished(client, settings, engine_run)
    response = client.get(f"/experiments/{experiment_id}/levels/1/mask")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "level001-mask.safetensors" in response.headers["content-disposition"]
    mask = load_safetensors(response.content)
    summary = engine_run.summaries[1]
    assert set(mask) == set(summary["layers"])
    for name, tensor in mask.items():
        assert tensor.dtype == np.bool_
        assert int(tensor.sum()) == summary["layers"][name]["remaining"]
        assert tensor.size == summary["layers"][name]["total"]
    remaining = sum(int(t.sum()) for t in mask.values()) / sum(t.size for t in mask.values())
    assert remaining == summary["weights_remaining"]
    assert_error(client.get(f"/experiments/{experiment_id}/levels/5/mask"), 404, "no_such_level")


def test_ticket_download_is_self_contained(
    client: TestClient, settings: Settings, engine_run: EngineRun, tmp_path
) -> None:
    experiment_id = _finished(client, settings, engine_run)
    response = client.get(f"/experiments/{experiment_id}/ticket")
    assert response.status_code == 200
    path = tmp_path / "ticket.safetensors"
    path.write_bytes(response.content)
    tensors = load_file(path)
    with safe_open(path, framework="numpy") as fh:
        metadata = fh.metadata()
    body = client.get(f"/experiments/{experiment_id}").json()
    ticket_level = body["ticket"]["level"]
    assert int(metadata["level"]) == ticket_level
    assert json.loads(metadata["spec"]) == body["spec"]
    assert json.loads(metadata["metrics"])["level"] == ticket_level
    theta0 = load_file(engine_run.out_dir / "init.safetensors")
    for name, weights in theta0.items():  # reset.mode "init": the ticket starts from theta_0
        np.testing.assert_array_equal(tensors[f"init/{name}"], weights)
    level_mask = load_file(artifacts.mask_path(settings, experiment_id, ticket_level))
    for name, mask in level_mask.items():
        np.testing.assert_array_equal(tensors[f"mask/{name}"], mask)


def test_missing_artifacts_say_why(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    experiment_id = submit(client)["id"]
    for path in ("levels/0/mask", "levels/0/metrics"):
        error = assert_error(
            client.get(f"/experiments/{experiment_id}/{path}"), 409, "artifact_not_ready"
        )
        assert "queued" in error["message"]
    # The ticket of an unfinished experiment is not final (issue 27) ...
    error = assert_error(
        client.get(f"/experiments/{experiment_id}/ticket"), 409, "ticket_not_final"
    )
    assert "queued" in error["message"]
    client.post(f"/experiments/{experiment_id}/cancel")
    # ... and one that ended with no finished pruned level has no ticket at all.
    error = assert_error(client.get(f"/experiments/{experiment_id}/ticket"), 404, "no_ticket")
    assert "has not finished" in error["message"]
    for path in ("levels/1/mask", "levels/1/metrics"):
        error = assert_error(
            client.get(f"/experiments/{experiment_id}/{path}"), 404, "artifact_missing"
        )
        assert "cancelled" in error["message"]


def test_mask_reuse_from_a_finished_level(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    source = _finished(client, settings, engine_run)
    dashed = f"{source[:8]}-{source[8:12]}-{source[12:16]}-{source[16:20]}-{source[20:]}"
    spec = tiny_spec(seed=3, mask={"experiment_id": dashed, "level": 1})
    response = client.post("/experiments", json=spec)
    assert response.status_code == 201, response.text
    stored = response.json()["spec"]["mask"]
    assert stored == {"experiment_id": source, "level": 1}  # canonical id for the worker
    assert artifacts.mask_path(settings, stored["experiment_id"], 1).is_file()


def test_mask_reuse_refuses_what_cannot_fit(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    source = _finished(client, settings, engine_run)

    def post(mask: dict, **changes) -> dict:
        return client.post("/experiments", json=tiny_spec(mask=mask, **changes))

    error = assert_error(
        post({"experiment_id": "f" * 32, "level": 0}), 404, "mask_source_not_found"
    )
    assert error["details"][0]["loc"] == ["body", "mask", "experiment_id"]
    error = assert_error(
        post({"experiment_id": source, "level": 4}), 422, "mask_level_out_of_range"
    )
    assert error["details"][0]["loc"] == ["body", "mask", "level"]

    other_shape = tiny_spec()["dataset"]
    other_shape["synthetic"]["input_shape"] = [1, 14, 14]
    error = assert_error(
        post({"experiment_id": source, "level": 1}, dataset=other_shape), 422, "mask_incompatible"
    )
    assert "input_shape" in error["message"]
    other_classes = tiny_spec()["dataset"]
    other_classes["synthetic"]["num_classes"] = 5
    error = assert_error(
        post({"experiment_id": source, "level": 1}, dataset=other_classes), 422, "mask_incompatible"
    )
    assert "num_classes" in error["message"]
    error = assert_error(
        post({"experiment_id": source, "level": 1}, model="conv2"), 422, "mask_incompatible"
    )
    assert error["details"][0]["loc"] == ["body", "model"]

    running = submit(client)["id"]
    with session_scope(settings) as session:
        claim_running(session, running)
    error = assert_error(
        post({"experiment_id": running, "level": 1}), 409, "mask_level_not_finished"
    )
    assert "not finished yet" in error["message"]
    client.post(f"/experiments/{running}/cancel")
    with session_scope(settings) as session:
        experiments.mark_cancelled(session, running)
    assert_error(post({"experiment_id": running, "level": 1}), 422, "mask_level_unavailable")


def test_deleting_a_mask_source_that_active_experiments_name_is_refused(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    """The dependent would fail later in the worker; the delete is refused naming it."""
    source = _finished(client, settings, engine_run)
    other = _finished(client, settings, engine_run)
    dependent = submit(client, tiny_spec(seed=4, mask={"experiment_id": source, "level": 1}))
    error = assert_error(client.delete(f"/experiments/{source}"), 409, "mask_source_in_use")
    assert dependent["id"] in error["message"]
    assert [d["loc"] for d in error["details"]] == [["path", "experiment_id"]]
    assert client.get(f"/experiments/{source}").status_code == 200, "nothing was deleted"
    assert artifacts.mask_path(settings, source, 1).is_file()
    assert client.delete(f"/experiments/{other}").status_code == 204, "unrelated: deletable"
    # Found: cancel the dependent, delete the source, resume the dependent -> the worker
    # failed with FileNotFoundError naming the server path. A cancelled (or failed) dependent
    # can be resumed, so it still holds its source.
    client.post(f"/experiments/{dependent['id']}/cancel")
    error = assert_error(client.delete(f"/experiments/{source}"), 409, "mask_source_in_use")
    assert "resumable" in error["message"] and dependent["id"] in error["message"]
    assert client.delete(f"/experiments/{dependent['id']}").status_code == 204
    assert client.delete(f"/experiments/{source}").status_code == 204, "no dependent left"


def test_a_dependent_whose_mask_source_is_gone_is_not_resumed(
    client: TestClient, settings: Settings, engine_run: EngineRun
) -> None:
    """A source deleted before sources were counted (or its files lost): resume is a 409
    that says why, not a failure in the worker naming a server path."""
    source = _finished(client, settings, engine_run)
    dependent = submit(client, tiny_spec(seed=4, mask={"experiment_id": source, "level": 1}))
    client.post(f"/experiments/{dependent['id']}/cancel")
    artifacts.remove_experiment(settings, source)  # its files are gone
    error = assert_error(
        client.post(f"/experiments/{dependent['id']}/resume"), 409, "mask_source_missing"
    )
    assert source in error["message"] and str(settings.data_dir) not in error["message"]
    assert client.get(f"/experiments/{dependent['id']}").json()["status"] == "cancelled"


def test_an_image_of_a_figure_with_nothing_to_draw_is_409_not_500(client: TestClient) -> None:
    """Found by the live fuzz run: an experiment without finished levels broke the PNG
    renderer (an empty chart has no size). The JSON description is still served."""
    experiment_id = submit(client, tiny_spec())["id"]
    for fmt in ("png", "svg"):
        response = client.get(f"/experiments/{experiment_id}/plots/accuracy_curves.{fmt}")
        assert_error(response, 409, "no_data")
    assert client.get(f"/experiments/{experiment_id}/plots/accuracy_curves.json").status_code == 200


def test_downloads_stream_from_a_store_without_local_files(
    client: TestClient,
    settings: Settings,
    engine_run: EngineRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store that keeps no file on this host (an object store) is streamed from, same bytes."""
    from lth_core.storage.store import LocalStore

    class Remote(LocalStore):
        def local_path(self, key: str) -> None:  # type: ignore[override]
            return None

    experiment_id = _finished(client, settings, engine_run)
    local = client.get(f"/experiments/{experiment_id}/ticket")
    monkeypatch.setattr(
        artifacts,
        "experiment_store",
        lambda s, i: Remote(artifacts.experiment_dir(s, i)),
    )
    streamed = client.get(f"/experiments/{experiment_id}/ticket")
    assert streamed.status_code == 200 and streamed.content == local.content
    assert streamed.headers["content-length"] == str(len(local.content))
    assert "ticket.safetensors" in streamed.headers["content-disposition"]
    assert streamed.headers["content-type"] == "application/octet-stream"
