"""What a short `lth run` costs as a whole process, against the usual loop's whole process.

    python bench/startup.py                    # 3 rounds, ~5 minutes on 2 CPU cores
    python bench/startup.py --rounds 1 --iterations 100 --out /tmp/startup.json

The workload is issue 25's: LeNet-300-100 on Fashion-MNIST, 2 pruning levels, 600 iterations
per run (the ticket at levels 0-2 and random_reinit at levels 1-2, evaluations as the spec
schedules them). Each round, alternating, times as separate processes (wall clock, start to exit):
- `lth run --quiet` with the decoded-dataset cache cold (an empty LTH_DATASETS_DIR) and warm;
- the usual loop's process (bench/reference_loop.py: torchvision, per-sample PIL, prune hooks;
  `--reference-child` below), which trains the same runs with the same masks rule;
and the fixed cost split apart, each in a fresh process: importing what `lth run` imports
(`python -c`), loading the data cold and cached (load_splits, timed inside), and drawing the
default figures of a finished run. Medians of the rounds are reported (best in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
IMPORTS = "import cli.main, cli.commands.run, lth_core.preflight, lth_core.experiment, scipy.stats"
LOAD = (
    "import json, sys, time, torch; from lth_core.nn.data import load_splits; from lth_core.spec import "
    "parse_spec; s = parse_spec(json.load(open(sys.argv[1]))); t = time.perf_counter(); "
    "load_splits(s.dataset); print(time.perf_counter() - t)"
)
FIGURES = (
    "import sys, time; from pathlib import Path; from cli.commands.run import write_plots; "
    "t = time.perf_counter(); write_plots(Path(sys.argv[1])); print(time.perf_counter() - t)"
)


def spec_data(iterations: int, levels: int) -> dict[str, Any]:
    return {
        "model": "lenet_300_100",
        "dataset": {"name": "fashion_mnist"},
        "training": {"iterations": iterations},
        "pruning": {"levels": levels},
    }


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def reference_child(spec_file: Path) -> None:
    """The usual loop as a whole process: IMP with torch.nn.utils.prune and per-sample PIL."""
    sys.path.insert(0, str(REPO / "bench"))
    import torch
    from reference_loop import train_reference
    from speed import fashion_reference_data
    from torch.nn.utils import prune

    from lth_core import pruning
    from lth_core.nn.models import build_model
    from lth_core.spec import parse_spec

    spec = parse_spec(json.loads(spec_file.read_text()))
    data = fashion_reference_data(spec.dataset.validation_size)
    theta0 = build_model(spec.model, (1, 28, 28), 10, seed=spec.seed).state_dict()
    kinds = build_model(spec.model, (1, 28, 28), 10, seed=spec.seed).weight_kinds()
    mask = pruning.dense_mask({n: theta0[n].shape for n in kinds})
    for level in range(spec.pruning.levels + 1):
        for kind, seed in [("ticket", spec.seed)] + ([("reinit", 1000 + level)] if level else []):
            model = build_model(spec.model, (1, 28, 28), 10, seed=seed)
            if kind == "ticket":
                model.load_state_dict(theta0)
            train_reference(model, mask, data, learning_rate=spec.training.learning_rate,
                            batch_size=spec.training.batch_size,
                            iterations=spec.training.iterations,
                            eval_every=spec.training.eval_every, seed=level)  # fmt: skip
            if kind == "ticket":
                for name in mask:
                    module_name, _, param = name.rpartition(".")
                    prune.remove(model.get_submodule(module_name), param)
                trained = {n: t.detach() for n, t in model.state_dict().items()}
        if level < spec.pruning.levels:
            mask = pruning.prune_level(trained, mask, kinds, spec.pruning)
    torch.save(mask, Path(tempfile.gettempdir()) / "startup-reference-mask.pt")


def measure(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec_data(args.iterations, args.levels)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    warm = {**env, "LTH_DATASETS_DIR": str(work / "warm")}
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    timed([PY, "-c", LOAD, str(spec_file)], warm)  # fills the warm cache
    for r in range(args.rounds):
        cold = {**env, "LTH_DATASETS_DIR": str(work / f"cold{r}")}
        for name, run_env in (("lth_run_cold_cache", cold), ("lth_run", warm)):
            out = work / f"{name}{r}"
            cmd = [PY, "-m", "cli.main", "run", str(spec_file), "--out", str(out), "--quiet"]
            add(name, timed(cmd, run_env)[0])
        add("reference_process", timed([PY, __file__, "--reference-child", str(spec_file)], env)[0])
        add("python_startup", timed([PY, "-c", "pass"], env)[0])
        add("imports", timed([PY, "-c", IMPORTS], env)[0])
        cold2 = {**env, "LTH_DATASETS_DIR": str(work / f"cold-load{r}")}
        add("data_load_cold", float(timed([PY, "-c", LOAD, str(spec_file)], cold2)[1].split()[-1]))
        add("data_load_cached", float(timed([PY, "-c", LOAD, str(spec_file)], warm)[1].split()[-1]))
        drawn = timed([PY, "-c", FIGURES, str(work / f"lth_run{r}")], env)[1]
        add("figures_default", float(drawn.split()[-1]))
    return samples


def write_md(result: dict[str, Any], path: Path) -> None:
    med = result["median_s"]
    ratio = med["reference_process"] / med["lth_run"]
    fixed = med["imports"] + med["data_load_cached"] + med["figures_default"]
    lines = [
        "# `lth run` as a whole process (issue 25)",
        "",
        f"Command: `{result['command']}`; {result['machine']}. One run on a shared 2-core "
        "machine (other helpers' work ran beside it): medians of "
        f"{result['rounds']} rounds, each a fresh process; LeNet-300-100, Fashion-MNIST, "
        f"{result['levels']} levels, {result['iterations']} iterations per run.",
        "",
        "| measurement | median s | best s |",
        "|---|---:|---:|",
    ]
    for name, value in med.items():
        lines.append(f"| {name} | {value:.3f} | {result['best_s'][name]:.3f} |")
    lines += [
        "",
        f"Whole-process ratio, usual loop / `lth run` (cache warm): **{ratio:.2f}x** "
        f"(cold cache: {med['reference_process'] / med['lth_run_cold_cache']:.2f}x).",
        f"Fixed cost of `lth run` (imports + cached data + default figures): {fixed:.2f} s of "
        f"{med['lth_run']:.2f} s; imports dominate it (torch and scipy.stats, which the "
        "ticket verdicts need).",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "startup.json")
    parser.add_argument("--reference-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_child:
        reference_child(args.reference_child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        samples = measure(args, Path(tmp))
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "rounds": args.rounds,
        "iterations": args.iterations,
        "levels": args.levels,
        "median_s": {k: statistics.median(v) for k, v in samples.items()},
        "best_s": {k: min(v) for k, v in samples.items()},
        "samples_s": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    write_md(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
