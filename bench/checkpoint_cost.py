"""What checkpoints inside a run cost (lth_core.train.checkpoint), for LeNet-300-100.

Trains LeNet-300-100 (MNIST-shaped synthetic data, no download) through the engine's own
`train_members` three ways, alternating, `--repeats` times each:
- `off`: no checkpoint callback at all (the loop as before checkpoints);
- `idle`: the callback present but never due (LTH_CHECKPOINT_SECONDS far away, no
  checkpoint_every): what every run pays when no checkpoint is written;
- `every_eval`: a checkpoint at every evaluation (checkpoint_every = eval_every).
and reports per-iteration wall time (the fastest repeat, and all of them), the size of one checkpoint, the
time to write one to a local store (tensors, manifest, deleting the older one) and the time to
read one back. Numbers are per machine; run it on the machine you care about:

    nice -n 10 .venv/bin/python bench/checkpoint_cost.py --optimizer adam --out bench/results/checkpoint_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lth_core.nn.data.base import Splits  # noqa: E402
from lth_core.nn.models import build_model  # noqa: E402
from lth_core.spec import TrainingSpec  # noqa: E402
from lth_core.storage.files import get_json  # noqa: E402
from lth_core.storage.layout import KEYS  # noqa: E402
from lth_core.storage.store import LocalStore  # noqa: E402
from lth_core.train.checkpoint import CheckpointSlot, decode  # noqa: E402
from lth_core.train.training import Member, train_members  # noqa: E402


@dataclass
class TimedSlot(CheckpointSlot):
    """A slot that records how long each write took and how many bytes it wrote."""

    writes: list[tuple[float, int]] = field(default_factory=list)

    def write(self, iteration: int, tensors: dict, body: dict) -> int:
        started = time.perf_counter()
        size = super().write(iteration, tensors, body)
        self.writes.append((time.perf_counter() - started, size))
        return size


def splits(n: int) -> Splits:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 2000, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n + 2000,), generator=g)
    return Splits(x[:n], y[:n], x[n : n + 1000], y[n : n + 1000], x[n + 1000 :], y[n + 1000 :], 10)


def run(mode: str, cfg: TrainingSpec, data: Splits, root: Path) -> tuple[float, TimedSlot | None]:
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    slot = None
    if mode != "off":
        every = cfg.eval_every if mode == "every_eval" else None
        store = LocalStore(root / mode)
        slot = TimedSlot(store, 0, ("ticket",), every=every, seconds=1e9, identity={})
    started = time.perf_counter()
    train_members([Member(model, mask, 0)], data, cfg, start_iteration=0, checkpoints=slot)
    return (time.perf_counter() - started) / cfg.iterations, slot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sgd = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    cfg = TrainingSpec(
        optimizer=args.optimizer,
        learning_rate=1.2e-3 if args.optimizer == "adam" else 0.05,
        batch_size=60,
        iterations=args.iterations,
        eval_every=args.eval_every,
        **sgd,
    )
    data = splits(6000)
    per_iteration: dict[str, list[float]] = {"off": [], "idle": [], "every_eval": []}
    writes: list[tuple[float, int]] = []
    read_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for mode in per_iteration:
                seconds, slot = run(mode, cfg, data, Path(tmp) / str(repeat))
                per_iteration[mode].append(seconds)
                if mode == "every_eval" and slot is not None:
                    writes += slot.writes
                    # Reading the newest back as a resume does (train_members leaves it;
                    # the runner deletes it once the run is published).
                    key = KEYS.checkpoint_manifest(0, "ticket", slot.iterations()[-1])
                    identity = decode(get_json(slot.store, key)["identity"])
                    started = time.perf_counter()
                    assert slot.latest(identity) is not None
                    read_seconds.append(time.perf_counter() - started)
    # The fastest repeat: on a shared machine the others measure the neighbours' load.
    median = {mode: min(v) for mode, v in per_iteration.items()}
    sizes = sorted({size for _, size in writes})
    result: dict[str, Any] = {
        "command": " ".join(["bench/checkpoint_cost.py", *sys.argv[1:]]),
        "model": "lenet_300_100",
        "optimizer": args.optimizer,
        "threads": args.threads,
        "torch": torch.__version__,
        "iterations": args.iterations,
        "eval_every": args.eval_every,
        "ms_per_iteration_fastest": {mode: round(v * 1e3, 4) for mode, v in median.items()},
        "ms_per_iteration_all": {
            mode: [round(x * 1e3, 4) for x in v] for mode, v in per_iteration.items()
        },
        "idle_overhead_per_iteration_us": round((median["idle"] - median["off"]) * 1e6, 2),
        "checkpoint_bytes": sizes,
        "checkpoint_write_ms_median": round(statistics.median(s for s, _ in writes) * 1e3, 2),
        "checkpoint_write_ms_max": round(max(s for s, _ in writes) * 1e3, 2),
        "checkpoints_written": len(writes),
        "every_eval_overhead_per_iteration_us": round(
            (median["every_eval"] - median["off"]) * 1e6, 2
        ),
    }
    if read_seconds:
        result["checkpoint_read_ms_median"] = round(statistics.median(read_seconds) * 1e3, 2)
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
