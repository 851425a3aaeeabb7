"""bench/reproduce_deep.py end to end on synthetic 8x8 data at a tiny size (the ResNet; the
VGG-19 spec is built and validated, its 20M weights are too slow for the suite on a CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lth_core.spec import parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import reproduce_deep


def test_the_paper_specs_at_full_scale() -> None:
    for model in ("vgg19", "resnet18"):
        data = reproduce_deep.deep_spec(
            model, 0.01, levels=8, trials=1, scale=1.0, dataset={"name": "cifar10"}, eval_every=1000
        )
        spec = parse_spec(data)
        assert spec.ticket_metric == "final" and spec.pruning.strategy == "global"
        assert spec.training.learning_rate == 0.01
    vgg = parse_spec(
        reproduce_deep.deep_spec(
            "vgg19",
            0.1,
            levels=1,
            trials=1,
            scale=1.0,
            dataset={"name": "cifar10"},
            eval_every=1000,
        )
    )
    assert vgg.training.report_iterations == [30_000, 60_000, 112_480]
    assert vgg.training.lr_milestones == [56_240, 84_360]


def test_reproduce_deep_runs_on_synthetic_data(tmp_path: Path) -> None:
    argv = [
        "--models", "resnet18", "--learning-rates", "0.1", "0.01", "--levels", "1",
        "--scale", "0.0001", "--eval-every", "3", "--dataset", "synthetic",
        "--synthetic-size", "32", "--synthetic-side", "8", "--device", "cpu",
        "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
    ]  # fmt: skip
    assert reproduce_deep.main(argv) == 0
    report = (tmp_path / "results" / "deep_report.md").read_text()
    assert "resnet18 at lr 0.1" in report and "resnet18 at lr 0.01" in report
    payload = json.loads((tmp_path / "results" / "deep_reproduction.json").read_text())
    ticket = payload["experiments"]["resnet18-lr0.01"]["ticket"]
    assert ticket["metric"] == "final" and ticket["level"] in (0, 1)
