"""Records a real experiment's progress events as a trace for the ETA's tests.

`python bench/progress_trace.py [-o tests/data/progress_trace.json]` trains a small LeNet
experiment on synthetic data (levels 0..3; level 0 the ticket alone, the pruned levels the
ticket with random_reinit) and writes, for every progress event, the seconds since the start,
the level, what trains, the iteration, and the iterations left (this level, later levels) as
lth_core.results.eta counts them. tests/test_first_hour_eta.py replays it through the ETA
estimators with the recorded clock: the same inputs a worker's ETA had, on real timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

SPEC: dict[str, Any] = {
    "model": "lenet_300_100",
    "seed": 5,
    "dataset": {
        "name": "synthetic",
        "validation_size": 500,
        "synthetic": {"input_shape": [1, 28, 28], "train_size": 5000, "test_size": 500},
    },
    "training": {"iterations": 1500, "eval_every": 50, "batch_size": 60},
    "pruning": {"levels": 3},
}


def record(out: Path) -> dict[str, Any]:
    import torch

    from lth_core.experiment import Experiment
    from lth_core.results.eta import iterations_left
    from lth_core.spec import parse_spec

    torch.set_num_threads(2)
    events: list[dict[str, Any]] = []
    start = time.monotonic()
    holder: dict[str, Any] = {}

    def progress(event: Any) -> None:
        kinds = list(getattr(event, "kinds", ()) or (event.kind,))
        if event.kind != kinds[0]:
            return
        now = time.monotonic() - start
        left = iterations_left(holder["exp"], event.level, event.iteration, kinds)
        events.append(
            {
                "t": round(now, 4),
                "level": event.level,
                "kinds": kinds,
                "iteration": event.iteration,
                "iterations": event.iterations,
                "left": list(left),
            }
        )

    with tempfile.TemporaryDirectory() as folder:
        exp = Experiment(parse_spec(SPEC), Path(folder), device="cpu", progress=progress)
        holder["exp"] = exp
        exp.run()
    trace = {
        "spec": SPEC,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "finished_at": round(time.monotonic() - start, 4),
        "events": events,
    }
    out.write_text(json.dumps(trace, indent=1) + "\n")
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--out", type=Path, default=Path("tests/data/progress_trace.json"))
    args = parser.parse_args()
    trace = record(args.out)
    print(json.dumps({"events": len(trace["events"]), "seconds": trace["finished_at"]}))


if __name__ == "__main__":
    main()
