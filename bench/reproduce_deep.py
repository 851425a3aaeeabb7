"""Reproduce the paper's deep-network result (Frankle & Carbin 2019, Figure 7, "lth4").

VGG-19 and the CIFAR ResNet ("resnet18", 20 layers) on CIFAR-10 with the paper's protocol
(SGD momentum 0.9, weight decay 1e-4, flips and pad-and-crop, global pruning 20% per level of
the conv weights), at learning rate 0.1 (where the paper finds no winning tickets: no better
than random reinitialization) and 0.01 (where tickets appear), each with a random_reinit
control. Accuracy is reported at the paper's fixed iterations (VGG-19 at 30K/60K/112K,
ResNet at 10K/20K/30K: early stopping is tangled with the step schedule) and the ticket rule
uses the last of them (`ticket_metric: "final"`), on validation data.

    python bench/reproduce_deep.py --device cuda            # the paper's budget, one trial
    python bench/reproduce_deep.py --trials 3 --levels 10   # more trials, deeper pruning

Every experiment is an `lth_core.experiment.Experiment` folder under --runs-dir (resumable);
the report (markdown + JSON) is regenerated from the folders with --report-only.

Cost on a GPU (H100/H200 class): VGG-19 trains at roughly 1,000-1,500 iterations/s of batch
64 (about 1.5-2 minutes per 112K-iteration run with augmentation on the GPU), ResNet-20 at
about 2,000 iterations/s of batch 128 (15-20 s per 30K run): the default command (2 models x
2 learning rates x (1 dense + 8 levels x 2 runs) runs) is some 70 VGG runs and 70 ResNet runs,
about 2-2.5 hours. Those rates are estimates from the engine's per-step cost, not measured on
this project's machines; each run's `seconds` in its metrics file gives the real figure.
`--scale` shortens every schedule proportionally (milestones and report points included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = REPO / "runs" / "reproduce_deep"

# The paper's reporting points (Figure 7 and Appendix I).
REPORT_ITERATIONS = {"vgg19": [30_000, 60_000, 112_480], "resnet18": [10_000, 20_000, 30_000]}
LEARNING_RATES = (0.1, 0.01)
PAPER = {
    "vgg19": "lr 0.1: no winning tickets (ticket no better than reinit); lr 0.01 or warmup: "
    "tickets down to 1.5% of weights",
    "resnet18": "lr 0.1: no winning tickets; lr 0.01 or warmup (20K at 0.03): 90.5% at 27.1%",
}


def deep_spec(
    model: str,
    learning_rate: float,
    *,
    levels: int,
    trials: int,
    scale: float,
    dataset: dict[str, Any],
    eval_every: int,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The paper's protocol for `model` at `learning_rate`; `scale` shortens the schedule."""
    from lth_core.spec.paper_defaults import paper_defaults_of

    training = (paper_defaults_of(model) or {})["training"]
    iterations = max(2, round(training["iterations"] * scale))

    def scaled(points: list[int]) -> list[int]:
        out = sorted({min(iterations - 1, max(1, round(p * scale))) for p in points})
        return [p for p in out if 0 < p < iterations]

    every = max(1, min(eval_every, iterations))
    reports = sorted(
        {
            iterations  # the paper's last point is the end of training
            if r == training["iterations"]
            else min(iterations, max(every, round(r * scale / every) * every))
            for r in REPORT_ITERATIONS[model]
        }
    )
    return {
        "name": f"reproduce-deep-{model}-lr{learning_rate:g}",
        "model": model,
        "dataset": dataset,
        "training": {
            "learning_rate": learning_rate,
            "iterations": iterations,
            "lr_milestones": scaled(training["lr_milestones"]),
            "eval_every": every,
            "report_iterations": [r for r in reports if r == iterations or r % every == 0],
            **({"batch_size": batch_size} if batch_size else {}),
        },
        "pruning": {"levels": levels},
        "controls": ["random_reinit"],
        "trials": trials,
        "ticket_metric": "final",
    }


def run_experiment(spec_data: dict[str, Any], out: Path, device: str, log: Any) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec

    exp = Experiment(parse_spec(spec_data), out, device=device)
    for level in exp.levels:
        if exp.is_level_done(level):
            continue
        started = time.perf_counter()
        exp.prepare_level(level)
        exp.train_runs(level)
        summary = exp.finish_level(level)
        print(
            f"{spec_data['name']} level {level} remaining {summary['weights_remaining']:.2%} "
            f"final acc {summary['final_test_accuracy']:.4f} ({time.perf_counter() - started:.0f}s)",
            file=log,
            flush=True,
        )


def _pm(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{100 * stat['mean']:.2f}% ± {100 * (stat.get('std') or 0):.2f}"


def report(runs_dir: Path, out_dir: Path, settings: dict[str, Any]) -> Path:
    """A markdown table per experiment: test accuracy at the last report iteration, ticket vs
    reinit (mean ± std over trials), and the engine's ticket decision on validation."""
    lines = [
        "# VGG-19 and ResNet-20 lottery tickets at lr 0.1 vs 0.01 (Frankle & Carbin 2019, Figure 7)",
        "",
        f"- Command: `{settings.get('command', '?')}`",
        f"- Device: {settings.get('device')}; training took {settings.get('train_seconds', '?')} s.",
        "",
    ]
    payload: dict[str, Any] = {"settings": settings, "experiments": {}}
    for folder in sorted(p for p in runs_dir.iterdir() if (p / "results.json").is_file()):
        results = json.loads((folder / "results.json").read_text())
        spec, levels = results["spec"], results["levels"]
        last = spec["training"].get("report_iterations", [])[-1:] or [None]
        key = f"test_accuracy@{last[0]}" if last[0] is not None else "final_test_accuracy"
        decision = results.get("ticket") or {}
        lines += [
            f"## {spec['model']} at lr {spec['training']['learning_rate']:g}",
            "",
            f"Paper: {PAPER[spec['model']]}. Engine's ticket (validation, `final` metric): "
            f"level {decision.get('level')}.",
            "",
            f"| level | weights remaining | ticket test acc @{last[0]} | reinit test acc | matches |",
            "|---:|---:|---:|---:|:---:|",
        ]
        verdicts = {v["level"]: v for v in decision.get("levels", [])}
        for s in levels:
            st = s.get("stats", {})
            verdict = verdicts.get(s["level"], {})
            lines.append(
                f"| {s['level']} | {100 * s['weights_remaining']:.2f}% | "
                f"{_pm(st.get('ticket', {}).get(key))} | "
                f"{_pm(st.get('random_reinit', {}).get(key))} | "
                f"{'yes' if verdict.get('qualifies') else 'no'} |"
            )
        lines.append("")
        payload["experiments"][folder.name] = {"ticket": decision, "levels": levels}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "deep_reproduction.json").write_text(json.dumps(payload, indent=1) + "\n")
    path = out_dir / "deep_report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgg19", "resnet18"])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(LEARNING_RATES))
    parser.add_argument("--levels", type=int, default=8, help="pruning rounds after level 0")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's budget")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the paper's")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "synthetic"])
    parser.add_argument("--synthetic-size", type=int, default=64, help="synthetic: examples")
    parser.add_argument("--synthetic-side", type=int, default=32, help="synthetic: image side")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)

    if args.dataset == "synthetic":  # for the tests and a quick look: tiny RGB images
        n, side = args.synthetic_size, args.synthetic_side
        dataset: dict[str, Any] = {
            "name": "synthetic",
            "augment": False,
            "validation_size": max(1, n // 4),
            "synthetic": {
                "input_shape": [3, side, side],
                "train_size": n,
                "test_size": max(1, n // 4),
            },
        }
    else:
        dataset = {"name": "cifar10", "augment": True}
    command = "python bench/reproduce_deep.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    settings: dict[str, Any] = {"command": command, "device": args.device, **vars(args)}
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        started = time.perf_counter()
        for model in args.models:
            for lr in args.learning_rates:
                spec = deep_spec(
                    model,
                    lr,
                    levels=args.levels,
                    trials=args.trials,
                    scale=args.scale,
                    dataset=dataset,
                    eval_every=args.eval_every,
                    batch_size=args.batch_size or (8 if args.dataset == "synthetic" else None),
                )
                run_experiment(spec, args.runs_dir / f"{model}-lr{lr:g}", args.device, sys.stdout)
        settings["train_seconds"] = round(time.perf_counter() - started, 1)
    path = report(args.runs_dir, args.results, settings)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
