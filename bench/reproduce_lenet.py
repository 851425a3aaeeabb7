"""Reproduce the paper's LeNet-300-100 figures (Frankle & Carbin 2019, Figures 3-4) with the engine.

Runs the paper's protocol (Adam 1.2e-3, batch 60, fc 20% / output 10% per level, reset to
theta_0, random_reinit controls at every level) through `lth_core.experiment.Experiment`: one
experiment with `trials` independent IMP runs (one per seed) and `control_repeats`
reinitializations per trial and level, the trials of a level trained as one stack where
lth_core.train.stacked says it pays, so the numbers are the product's own and an interrupted run
resumes where it stopped. Then `bench/lenet_report.py` turns the folder into the results
JSON, the three figures (with error bars) and the markdown report.

    python bench/reproduce_lenet.py --seeds 0 1 2 --reinits 2 --levels 12 --iterations 3000

The full protocol (50K iterations, 15+ levels, 5 trials x 3 reinits) takes days on a CPU; the
flags shorten it, and the report records whatever settings were used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = REPO / "runs" / "reproduce_lenet"
DEFAULT_RESULTS = REPO / "bench" / "results"


def lenet_spec(
    seeds: list[int],
    reinits: int,
    levels: int,
    iterations: int,
    eval_every: int,
    dataset: str,
    controls: list[str],
) -> dict:
    """The paper's LeNet protocol; only the budget (iterations, levels, trials) varies."""
    return {
        "name": f"reproduce-lenet-{dataset}",
        "model": "lenet_300_100",
        "dataset": {"name": dataset},
        "training": {
            "optimizer": "adam",
            "learning_rate": 1.2e-3,
            "batch_size": 60,
            "iterations": iterations,
            "eval_every": eval_every,
        },
        "pruning": {
            "levels": levels,
            "strategy": "layerwise",
            "rates": {"fc": 0.2, "output": 0.1},
        },
        "reset": {"mode": "init"},
        "controls": controls,
        "seeds": seeds,
        "control_repeats": reinits,
    }


def run_seed(spec_data: dict, out: Path, device: str, log: Any) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec

    spec = parse_spec(spec_data)
    exp = Experiment(spec, out, device=device)
    for level in exp.levels:
        if exp.is_level_done(level):
            continue
        exp.prepare_level(level)
        started = time.perf_counter()
        exp.train_runs(level)  # ticket and reinit stacked where lth_core.train.stacked says it pays
        summary = exp.finish_level(level)
        ctrl = summary["controls"].get("random_reinit", {})
        print(
            f"level {level:2d} remaining {summary['weights_remaining']:.3%} "
            f"ticket es={summary['early_stop_iteration']} acc={summary['early_stop_test_accuracy']:.4f} "
            f"reinit es={ctrl.get('early_stop_iteration')} acc={ctrl.get('early_stop_test_accuracy')} "
            f"({time.perf_counter() - started:.1f}s)",
            file=log,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one per trial")
    parser.add_argument("--reinits", type=int, default=2, help="draws per control, trial and level")
    parser.add_argument(
        "--controls",
        nargs="+",
        default=["random_reinit", "random_prune"],
        help="the paper's two controls: same mask with a fresh init, a random mask",
    )
    parser.add_argument("--levels", type=int, default=15, help="pruning rounds after level 0")
    parser.add_argument("--iterations", type=int, default=50_000, help="per run (paper: 50K)")
    parser.add_argument("--eval-every", type=int, default=100, help="paper: 100")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS, help="the run's folder")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--report-only", action="store_true", help="skip training")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python bench/reproduce_lenet.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    settings = {
        "command": command,
        "seeds": args.seeds,
        "reinits": args.reinits,
        "controls": args.controls,
        "levels": args.levels,
        "iterations": args.iterations,
        "eval_every": args.eval_every,
        "dataset": args.dataset,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    settings_file = args.runs_dir / "settings.json"
    if args.report_only and settings_file.is_file():
        settings = json.loads(settings_file.read_text())  # the training run's own settings
    else:
        settings_file.write_text(json.dumps(settings, indent=1) + "\n")
        started = time.perf_counter()
        spec = lenet_spec(
            args.seeds,
            args.reinits,
            args.levels,
            args.iterations,
            args.eval_every,
            args.dataset,
            args.controls,
        )
        run_seed(spec, args.runs_dir / "experiment", args.device, sys.stdout)
        settings["train_seconds"] = round(time.perf_counter() - started, 1)
        settings_file.write_text(json.dumps(settings, indent=1) + "\n")
    sys.path.insert(0, str(REPO / "bench"))
    from lenet_report import write_report

    write_report(args.runs_dir, args.results, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
