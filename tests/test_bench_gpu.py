"""bench/gpu.py in its tiny mode on the CPU, so the GPU benchmark cannot rot without a GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.usefixtures("one_torch_thread")
def test_gpu_bench_tiny_mode_runs_every_part_on_the_cpu(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    assert spec is not None and spec.loader is not None
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    report = gpu.main(["--tiny", "--device", "cpu", "--results", str(tmp_path)])
    assert report["card"] == "cpu" and report["bit_stable"] is True
    assert [e["ok"] for e in report["end_to_end"]] == [True]
    assert report["end_to_end"][0]["ticket_level"] is not None
    (throughput,) = report["throughput"]
    assert throughput["iterations_per_second"] > 0 and throughput["peak_memory_bytes"] is None
    (stack,) = report["stacking"]
    assert [row["k"] for row in stack["rows"]] == [1, 2]
    assert stack["rows"][0]["time_vs_k1"] == 1.0
    written = json.loads((tmp_path / "gpu.json").read_text())
    assert written["end_to_end"] == report["end_to_end"]
    assert "# bench/gpu.py on cpu" in (tmp_path / "gpu.md").read_text()
