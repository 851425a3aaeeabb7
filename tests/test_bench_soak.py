"""The soak test in small (bench/soak.py): the embedded default under a few clients, with a
worker killed with SIGKILL mid-run, and every invariant checked from the database after.

The committed figures (bench/SOAK.md) come from 10-minute runs of both set-ups; this keeps the
script working and the invariants true in every run of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_soak_embedded_with_a_worker_kill_keeps_every_invariant(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *(sys.executable, str(REPO / "bench" / "soak.py"), "--setup", "embedded"),
            *("--minutes", "0.3", "--kill-every", "9", "--clients", "2", "--seeds", "1"),
            *("--active-limit", "1", "--drain-seconds", "90", "--out", str(tmp_path)),
            *("--burst-clients", "4", "--burst-seconds", "2"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=220,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result) >= {
        "minutes",
        "requests",
        "experiments",
        "worker_kills",
        "server_errors",
        "lost_levels",
        "stuck",
        "mismatched",
    }
    assert run.returncode == 0, (result, run.stderr[-3000:])
    assert result["worker_kills"] >= 1 and result["experiments"] >= 1
    assert result["server_errors"] == result["lost_levels"] == 0
    assert result["stuck"] == result["mismatched"] == result["idempotency_violations"] == 0
    assert result["requests"] > 20
    assert "clients" in result["download_burst"]
