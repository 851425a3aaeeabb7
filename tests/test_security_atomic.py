"""Artifacts under a killed writer, and a worker that cannot write its artifacts.

The engine writes every artifact to a temporary file and renames it over the target, so a
worker killed at any moment leaves the previous file or none, never half a file, and the API
serves only the final names. A full disk or an unwritable artifact directory fails the
experiment with the error, instead of leaving it running.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_service_support import assert_error, claim_running, submit

from store import artifacts
from store.db import session_scope
from store.settings import Settings

pytest_plugins = ("test_service_support",)

ROOT = Path(__file__).resolve().parents[1]

# Writes ever-new masks over one target as fast as it can; each file's metadata says which
# value every element must have, so a torn file cannot pass for a whole one.
_WRITER = """
import os, sys, torch
from lth_core.storage import files as artifacts
target = sys.argv[1]
mode = sys.argv[2]
if mode == "die-at-rename":
    os.replace = lambda *a: os.kill(os.getpid(), 9)
i = 0
while True:
    t = torch.full((512, 1024), i % 251, dtype=torch.uint8)
    artifacts.save_tensors(__import__("pathlib").Path(target), {"w": t}, {"value": str(i % 251)})
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def _writer(target: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _whole_or_absent(path: Path) -> bool:
    """True for a whole file, False for none; fails on a torn one. Read in one go: the
    writer may rename a newer file over the name while we look."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    from safetensors.torch import load

    size = int.from_bytes(data[:8], "little")
    value = int(json.loads(data[8 : 8 + size])["__metadata__"]["value"])
    tensor = load(data)["w"]
    assert tensor.shape == (512, 1024)
    assert bool((tensor == value).all()), "a torn file"
    return True


def test_a_writer_killed_mid_write_leaves_whole_files_only(tmp_path: Path) -> None:
    target = tmp_path / "levels" / "001" / "mask.safetensors"
    writer = _writer(target, "loop")
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for delay in (0.013, 0.029, 0.041):  # kill at arbitrary points of later writes
            time.sleep(delay)
            assert _whole_or_absent(target)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL
    assert _whole_or_absent(target)


def test_killed_before_the_rename_the_api_serves_nothing_half_written(
    client: TestClient, settings: Settings
) -> None:
    experiment_id = submit(client)["id"]
    with session_scope(settings) as session:
        assert claim_running(session, experiment_id, "t")
    target = artifacts.mask_path(settings, experiment_id, 0)
    writer = _writer(target, "die-at-rename")
    writer.wait(60)
    assert writer.returncode == -signal.SIGKILL
    leftovers = list(target.parent.iterdir())
    assert leftovers and all(p.name.endswith(".tmp") for p in leftovers)  # temp file only
    assert not target.exists()
    assert_error(
        client.get(f"/experiments/{experiment_id}/levels/0/mask"), 409, "artifact_not_ready"
    )
    # A half-written run file next to a whole one: only the whole one is read.
    runs = artifacts.run_path(settings, experiment_id, 0, "ticket").parent
    runs.mkdir(parents=True, exist_ok=True)
    (runs / ".ticket.json.x1y2.tmp").write_text('{"kind": "ticket", "curve": [')
    assert_error(
        client.get(f"/experiments/{experiment_id}/levels/0/metrics"), 409, "artifact_not_ready"
    )
    (runs / "ticket.json").write_text(json.dumps({"iterations": 50, "curve": []}))
    metrics = client.get(f"/experiments/{experiment_id}/levels/0/metrics").json()
    assert list(metrics["runs"]) == ["ticket"]


def _run_worker(settings: Settings, experiment_id: str) -> str:
    from worker.level.task import LevelTask

    return LevelTask(settings, experiment_id, send_next=lambda: None, device="cpu").run()


@pytest.mark.parametrize("fault", ["disk_full", "unwritable_dir"])
def test_a_worker_that_cannot_write_fails_the_experiment_with_the_error(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    pytest.importorskip("torch")
    from lth_core.storage.store import LocalStore

    experiment_id = submit(client)["id"]
    if fault == "disk_full":

        def full(self: LocalStore, key: str, *_a: object, **_k: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / key))

        # Every artifact the engine writes goes through the artifact store's one write.
        monkeypatch.setattr(LocalStore, "put", full)
        expected = "No space left on device"
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.experiments_dir.write_text("not a directory")
        expected = "experiments/"  # relative: no server path in errors (issue 24)
    outcome = _run_worker(settings, experiment_id)
    assert outcome == "failed"
    body = client.get(f"/experiments/{experiment_id}").json()
    assert body["status"] == "failed" and body["finished_at"] is not None
    assert expected in body["error"]["message"], body["error"]
