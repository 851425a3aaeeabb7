"""bench/time_to_ticket.py end to end at a tiny size on synthetic data, so the benchmark whose
results are committed cannot rot: protocol, cheap setting with verification, every ablation
row, the patience analysis, both result files and the one JSON line printed last."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

KEYS = {
    "protocol_seconds",
    "cheap_seconds",
    "speedup",
    "weights_remaining",
    "protocol_test_accuracy",
    "cheap_verified_test_accuracy",
    "verified",
}


@pytest.mark.usefixtures("one_torch_thread")
def test_time_to_ticket_quick_preset_runs_every_part_on_synthetic_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("bench_ttt", REPO / "bench" / "time_to_ticket.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--quick", "--dataset", "synthetic", "--iterations", "200", "--levels", "3"]
    # One verification repeat: at 3 levels of 200 iterations, three repeats of the dense
    # reference and of the verification level would outweigh the one protocol level saved.
    argv += ["--cheap-levels", "2", "--ablation-levels", "1", "--verify-repeats", "1"]
    argv += ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    summary = bench.main(argv)

    # the quick preset: the whole training set, 8 cheap levels unless told, no early-bird in
    # the cheap setting (it is measured alone), verification with a wider patience
    st = summary["settings"]
    assert st["train_subset"] is None and st["cheap_levels"] == 2
    assert "early_bird" not in st["cheap_techniques"] and "patience" in st["cheap_techniques"]
    assert st["cheap_spec"]["pruning"].get("early_bird") is None
    assert st["cheap_spec"]["verify"]["patience"] == st["verify_patience"] > st["patience"]
    assert st["cheap_spec"]["verify"]["repeats"] == st["verify_repeats"] == 1
    assert len(st["load_average_before"]) == len(st["load_average_after"]) == 3

    assert set(summary["ablation"]) == {
        "patience",
        "early_bird",
        "test_eval",
        "fewer_levels",
        "deferred_controls",
        "stacking",
    }
    # the protocol trains 1 + 2 * levels runs of the full budget; the cheap setting fewer
    assert summary["protocol"]["iterations"] == 200 * (1 + 2 * 3)
    assert summary["cheap"]["iterations"] < summary["protocol"]["iterations"]
    assert summary["cheap"]["verified"] in (True, False)
    assert summary["cheap"]["verified_ticket"]["level"] == 2

    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line) == KEYS and line["verified"] == summary["cheap"]["verified"]
    written = json.loads((tmp_path / "results" / "time_to_ticket-quick.json").read_text())
    assert written["speedup"] == summary["speedup"]
    md = (tmp_path / "results" / "time_to_ticket-quick.md").read_text()
    assert "Machine load average" in md and "| stacking |" in md
    assert ("(verified)" in md) == bool(summary["cheap"]["verified"])
    assert md.startswith("# Time to") and "**Not converged" in md  # --quick says so plainly

    # --seeds: the cheap recipe alone on other seeds, each with its own dense network, its
    # verdict with intervals, against the protocol cost recorded above.
    capsys.readouterr()
    checked = bench.main([*argv, "--ablation-levels", "1", "--seeds", "1"])
    seeds = checked["seeds_check"]
    assert seeds["settings"]["seeds"] == [1] and seeds["settings"]["converged"] is False
    assert checked["settings"]["seeds"] == [0, 1]
    (row,) = seeds["seeds"]
    assert row["verdict"] in ("yes", "no", "inconclusive") and row["dense"]["level"] == 0
    accuracy = row["comparisons"]["matches_dense_accuracy"]
    assert len(accuracy["interval"]) == 2 and accuracy["test"].startswith(("McNemar", "paired t"))
    assert row["iterations_factor"] == pytest.approx(
        summary["protocol"]["iterations"] / row["iterations"]
    )
    md = (tmp_path / "results" / "time_to_ticket-quick.md").read_text()
    assert "## The recipe on other seeds" in md and "| 1 |" in md
