"""A short real run on a Fashion-MNIST subset learns, and winning tickets keep up with the dense net."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_lth_run_on_fashion_mnist_reaches_a_sensible_accuracy(tmp_path: Path) -> None:
    spec = {
        "model": "lenet_300_100",
        "dataset": {"name": "fashion_mnist", "train_subset": 6000},
        "training": {"iterations": 600, "eval_every": 100},
        "pruning": {"levels": 2},
        "controls": ["random_reinit"],
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "run",
            str(spec_path),
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "winning ticket" in done.stdout
    results = json.loads((out / "results.json").read_text())
    levels = results["levels"]
    assert [lv["level"] for lv in levels] == [0, 1, 2]
    assert levels[0]["early_stop_test_accuracy"] > 0.75  # chance is 0.10
    # At 64% of weights a ticket is still about as good as the dense network.
    assert levels[2]["early_stop_test_accuracy"] > levels[0]["early_stop_test_accuracy"] - 0.03
    assert levels[2]["weights_remaining"] == pytest.approx(0.6406, abs=1e-3)
    assert "random_reinit" in levels[2]["controls"]
    for name in ("init.safetensors", "ticket.safetensors", "levels/002/mask.safetensors"):
        assert (out / name).is_file()


def test_lth_run_refuses_a_bad_spec_naming_the_field(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"model": "lenet_300_100", "pruning": {"rates": {"fc": 1.5}}}))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(spec_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "pruning.rates.fc" in done.stderr


def test_lth_run_set_overrides_and_help(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "warmup" in help_text and "rewind" in help_text
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(
        json.dumps(
            {"model": "lenet_300_100", "dataset": {"name": "synthetic", "validation_size": 100}}
        )
    )
    done = subprocess.run(
        [
            sys.executable, "-m", "cli.main", "run", str(spec_path), "--out", str(tmp_path / "o"), "--quiet",
            "--set", "training.iterations=40", "--set", "training.eval_every=20", "--set", "pruning.levels=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "o" / "spec.json").read_text())
    assert saved["training"]["iterations"] == 40 and saved["pruning"]["levels"] == 1
