"""bench/artifact_backends.py runs end to end on a tiny budget: both backends, the bytes they
moved, and the same masks and weights on both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_both_backends_move_the_same_bytes_and_agree(tmp_path: Path) -> None:
    argv = [sys.executable, "bench/artifact_backends.py", "--rounds", "1", "--levels", "1"]
    argv += ["--iterations", "20", "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "artifact_backends.json").read_text())
    local, s3 = result["runs"]["local"][0], result["runs"]["s3"][0]
    assert result["same_results"] is True
    for counted in ("objects_written", "objects_read"):
        assert local[counted] == s3[counted] > 0, counted
    for counted in ("bytes_written", "bytes_read"):  # the JSON files carry wall seconds
        assert abs(local[counted] - s3[counted]) <= 0.001 * local[counted], counted
    assert local["s3_requests"] == {}
    assert s3["s3_requests"]["PutObject"] == s3["objects_written"]
    assert s3["s3_requests"]["GetObject"] >= s3["objects_read"]
    assert "| s3 | 1 |" in (tmp_path / "artifact_backends.md").read_text()
    assert json.loads(done.stdout.strip().splitlines()[-1])["same_results"] is True
