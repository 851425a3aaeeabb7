"""Many hosts, no shared filesystem (issue 26): `lth api` and two `lth worker`s, each with its
own LTH_DATA_DIR, sharing only PostgreSQL, Redis and an S3 store (`rclone serve s3`, started
here). One worker is killed mid-level; the other finishes from the store alone; the masks and
curves equal a local `lth run`'s; the API serves the ticket after the workers' folders are
gone."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_servers import client, rclone_server, s3_env
from test_worker_faults import (
    ROOT,
    Api,
    Processes,
    _assert_same_results,
    _clear_tables,
    _free_port,
    at,
    base_env,
    finished,
    flush,
    level_rows,
    pg_url,  # noqa: F401  (fixture)
    redis_db,  # noqa: F401  (fixture)
    tiny,
)

from lth_core.storage.s3 import S3Store
from lth_core.storage.store import LocalStore

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(300)]


@pytest.fixture
def hosts(
    tmp_path: Path,
    redis_db: int,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> Iterator[tuple[Processes, Api, dict[str, str], Path]]:
    with rclone_server(tmp_path) as endpoint:
        env = {
            **base_env(tmp_path / "api", pg_url, f"redis://127.0.0.1:6379/{redis_db}"),
            **s3_env(endpoint),
        }
        processes = Processes(env, tmp_path)
        port = _free_port()
        api = Api(f"http://127.0.0.1:{port}")
        try:
            api.wait_ready(processes.start("api", "api", "--port", str(port)))
            yield processes, api, env, tmp_path
        finally:
            processes.stop_all()
            flush(redis_db)
            _clear_tables(pg_url)


def _local_lth_run(spec: dict[str, Any], out: Path, env: dict[str, str]) -> None:
    """`lth run` on one host, into a local folder (no object store)."""
    spec_file = out.with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    local = {k: v for k, v in env.items() if not k.startswith(("AWS_", "LTH_ARTIFACTS"))}
    subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(spec_file), "--out", str(out), "--quiet"],
        cwd=ROOT,
        env=local,
        check=True,
        timeout=180,
        capture_output=True,
    )


def test_two_hosts_one_killed_share_only_the_store(hosts, pg_url) -> None:  # noqa: F811
    processes, api, env, tmp = hosts
    scratch = [tmp / "host1", tmp / "host2"]
    victim = processes.worker(LTH_DATA_DIR=str(scratch[0]))
    spec = tiny()
    experiment_id = api.submit(spec)
    api.wait(experiment_id, lambda b: at(b, "level") >= 1 and at(b, "iteration") >= 40, every=0.05)
    processes.kill(victim)
    killed_at = time.monotonic()
    processes.worker(LTH_DATA_DIR=str(scratch[1]))
    body = api.wait(experiment_id, finished, timeout=180)
    assert body["status"] == "succeeded", body
    print(
        f"\nkilled host 1 mid-level 1; host 2 finished {time.monotonic() - killed_at:.1f} s later"
    )
    assert level_rows(pg_url, experiment_id) == [0, 1, 2, 3]
    assert not (tmp / "api" / "experiments").exists(), "the API wrote no artifact locally"

    # What the hosts produced, from the store alone, equals one host's `lth run`.
    store = S3Store.from_url(
        env["LTH_ARTIFACTS_URL"], client=client(env["AWS_ENDPOINT_URL"]), retry_seconds=10
    ).scoped(f"experiments/{experiment_id}")
    copied = LocalStore(tmp / "from-store")
    for key in store.list():
        copied.put(key, store.get(key))  # every object checked against its digest
    reference = tmp / "reference"
    _local_lth_run(body["spec"], reference, env)
    _assert_same_results(copied.root, reference, levels=4)

    for folder in scratch:
        shutil.rmtree(folder, ignore_errors=True)
    ticket = api.http.get(f"/experiments/{experiment_id}/ticket")
    if body["ticket"] is None:  # no pruned level qualified (issue 27): no file, and it says why
        assert ticket.status_code == 404 and ticket.json()["error"]["type"] == "no_ticket"
        assert not store.exists("ticket.safetensors")
        return
    assert ticket.status_code == 200
    assert ticket.content == store.get("ticket.safetensors")
    assert ticket.headers["etag"] == f'"{hashlib.sha256(ticket.content).hexdigest()}"'
