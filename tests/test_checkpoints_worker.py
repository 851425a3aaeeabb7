"""Checkpoints through the worker, across hosts (issue 26): a worker killed (kill -9) mid-run
leaves its latest checkpoint in the S3 store; a worker on another host, with its own empty
folder, resumes the run from that checkpoint (not from iteration 0) and the experiment ends
with the masks and curves of a local `lth run`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from s3_servers import client
from test_multi_host import _local_lth_run, hosts  # noqa: F401  (fixture)
from test_worker_faults import (
    TINY,
    finished,
    level_rows,
    pg_url,  # noqa: F401  (fixture)
    redis_db,  # noqa: F401  (fixture)
)

from lth_core.storage.s3 import S3Store
from lth_core.storage.store import ArtifactStore, LocalStore

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(300)]


def manifests(store: ArtifactStore) -> list[tuple[int, str, int]]:
    """(level, training label, iteration) of every checkpoint manifest in the store."""
    found = []
    for key in store.list("levels"):
        parts = key.split("/")
        if len(parts) == 5 and parts[2] == "checkpoints" and parts[4].endswith(".json"):
            found.append((int(parts[1]), parts[3], int(parts[4].removesuffix(".json"))))
    return sorted(found)


def test_d_a_killed_worker_is_resumed_from_its_checkpoint_on_another_host(
    hosts,  # noqa: F811
    pg_url,  # noqa: F811
) -> None:
    processes, api, env, tmp = hosts
    spec: dict[str, Any] = json.loads(json.dumps(TINY))
    spec["training"] = {"iterations": 1500, "eval_every": 50, "checkpoint_every": 250}
    spec["pruning"] = {"levels": 1}
    spec["controls"] = []
    victim = processes.worker(LTH_DATA_DIR=str(tmp / "host1"))
    experiment_id = api.submit(spec)
    store = S3Store.from_url(
        env["LTH_ARTIFACTS_URL"], client=client(env["AWS_ENDPOINT_URL"]), retry_seconds=10
    ).scoped(f"experiments/{experiment_id}")

    deadline = time.monotonic() + 120
    while not manifests(store):
        assert time.monotonic() < deadline, "no checkpoint was written"
        assert not finished(api.get(experiment_id)), "the run finished before a checkpoint"
        time.sleep(0.05)
    processes.kill(victim)
    left = manifests(store)
    assert len(left) == 1, f"one checkpoint per training is kept: {left}"
    level, label, iteration = left[0]
    assert label == "ticket" and iteration % 250 == 0 and 0 < iteration < 1500

    survivor = processes.worker(LTH_DATA_DIR=str(tmp / "host2"))
    body = api.wait(experiment_id, finished, timeout=180)
    assert body["status"] == "succeeded", body
    assert level_rows(pg_url, experiment_id) == [0, 1]
    run = json.loads(store.get(f"levels/{level:03d}/runs/ticket.json"))
    assert run["cost"]["resumed_from"] == iteration, "the resumed run skipped what was trained"
    log = Path(survivor.log_path).read_text(errors="replace")
    assert f"resumed from the checkpoint at iteration {iteration}" in log
    assert not manifests(store), "the finished runs' checkpoints are deleted"
    print(f"\nkilled at level {level} after the checkpoint at {iteration}; resumed there")

    copied = LocalStore(tmp / "from-store")
    for key in store.list():
        copied.put(key, store.get(key))
    reference = tmp / "reference"
    _local_lth_run(body["spec"], reference, env)
    _assert_same_masks_and_curves(copied.root, reference, levels=2)


def _assert_same_masks_and_curves(out: Path, reference: Path, levels: int) -> None:
    from safetensors.torch import load_file

    for level in range(levels):
        name = f"levels/{level:03d}"
        got, want = (
            load_file(out / name / "mask.safetensors"),
            load_file(reference / name / "mask.safetensors"),
        )
        assert got.keys() == want.keys()
        for key in want:
            assert bool((got[key] == want[key]).all()), f"{name} mask {key} differs"
        for run in sorted((reference / name / "runs").glob("*.json")):
            a = json.loads(run.read_text())
            b = json.loads((out / name / "runs" / run.name).read_text())
            for record in (a, b):
                record.pop("seconds"), record.pop("cost")  # cost: where it resumed
            assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), run.name
    a, b = load_file(out / "ticket.safetensors"), load_file(reference / "ticket.safetensors")
    assert all(bool((a[k] == b[k]).all()) for k in b) and a.keys() == b.keys()
