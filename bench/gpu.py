"""The GPU half of performance: one command for a machine with a CUDA card (< 8 minutes).

    python bench/gpu.py                       # on CUDA: writes bench/results/gpu.{json,md}
    python bench/gpu.py --tiny --device cpu   # a few steps of everything (what the tests run)

What it measures, each through the engine's own code (lth_core), the card's name recorded:
1. `lth run` end to end (a subprocess, as a user runs it) on the device: LeNet-300-100 on
   Fashion-MNIST (synthetic MNIST-shaped data if the files are not there), Conv-2, ResNet-18
   and VGG-19 on synthetic CIFAR-shaped data; one pruning level each, a short budget;
2. training iterations per second per model at the paper's batch sizes (60 for LeNet and
   Conv-2, 128 for ResNet-18, 64 for VGG-19), evaluation left out, and the peak device memory;
3. stacking K = 1, 2, 4, 8 members of LeNet and Conv-2 (lth_core.train.stacked): time per member
   against one alone (the target is K = 8 in at most 2x the time of K = 1);
4. bit-stability: the same LeNet run twice on the device gives the same weights.

CUDA graphs and torch.compile are not used: no measurement has yet shown them to pay here,
and this is the command that would show it (per-step time at K = 1 is the number to beat).
Nothing here requires a GPU: on a CPU it measures the CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CIFAR = {"name": "synthetic", "validation_size": 500, "synthetic": {"input_shape": [3, 32, 32]}}
MNIST_SHAPED = {"name": "synthetic", "validation_size": 500}
# Iterations timed per model (after warm-up) on a GPU, and the paper's batch sizes.
FULL_STEPS = {"lenet_300_100": 3000, "conv2": 1000, "resnet18": 300, "vgg19": 150}
BATCH = {"lenet_300_100": 60, "conv2": 60, "resnet18": 128, "vgg19": 64}
STACK_STEPS = {"lenet_300_100": 1000, "conv2": 300}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


TINY_DATA = {"train_size": 96, "test_size": 16}


def _dataset(model: str, tiny: bool, have_fashion: bool) -> dict[str, Any]:
    if model != "lenet_300_100":
        if tiny:  # VGG-19's five poolings need 16x16 at least
            return {
                **CIFAR,
                "validation_size": 16,
                "synthetic": {"input_shape": [3, 16, 16], **TINY_DATA},
            }
        return {**CIFAR, "synthetic": {"input_shape": [3, 32, 32], "train_size": 2000}}
    if have_fashion and not tiny:
        return {"name": "fashion_mnist"}
    return {**MNIST_SHAPED, "validation_size": 16, "synthetic": TINY_DATA} if tiny else MNIST_SHAPED


def fashion_available() -> bool:
    from lth_core.nn.data import DatasetUnavailable, load_splits
    from lth_core.spec import DatasetSpec

    try:
        load_splits(DatasetSpec(name="fashion_mnist"))
    except (DatasetUnavailable, OSError, RuntimeError):
        return False
    return True


def end_to_end(model: str, device: str, tiny: bool, have_fashion: bool) -> dict[str, Any]:
    """`lth run` on the device in a subprocess: its exit status, wall seconds, ticket level."""
    iterations = 4 if tiny else 300
    spec = {
        "model": model,
        "dataset": _dataset(model, tiny, have_fashion),
        # A short budget: the deep nets' learning-rate drops (at 20K+ iterations) are left out.
        "training": {
            "iterations": iterations,
            "eval_every": iterations,
            "batch_size": 16,
            "lr_milestones": [],
        }
        if tiny
        else {"iterations": iterations, "eval_every": 100, "lr_milestones": []},
        "pruning": {"levels": 1},
        "controls": ["random_reinit"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        started = time.perf_counter()
        argv = ["run", str(path), "--out", f"{tmp}/out", "--device", device, "--quiet"]
        if tiny:  # the same command in this process: the tests skip a second interpreter start
            from typer.testing import CliRunner

            from cli.main import app

            done = CliRunner().invoke(app, argv)
            returncode, stderr = done.exit_code, str(done.output) + repr(done.exception or "")
        else:
            proc = subprocess.run(
                [sys.executable, "-m", "cli.main", *argv],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=600,
            )
            returncode, stderr = proc.returncode, proc.stderr
        seconds = time.perf_counter() - started
        results = Path(tmp) / "out" / "results.json"
        ticket = json.loads(results.read_text())["ticket_level"] if results.is_file() else None
    return {
        "model": model,
        "dataset": spec["dataset"]["name"],
        "iterations": iterations,
        "ok": returncode == 0,
        "seconds": seconds,
        "ticket_level": ticket,
        "stderr_tail": stderr[-500:] if returncode else "",
    }


def _members(model: str, k: int, splits: Any, device: Any) -> list[Any]:
    from lth_core import pruning
    from lth_core.nn.models import build_model
    from lth_core.train.training import Member

    shape, classes = tuple(splits.train_x.shape[1:]), int(splits.train_y.max()) + 1
    out = []
    for i in range(k):
        net = build_model(model, shape, classes, seed=i).to(device)
        shapes = {n: net.state_dict()[n].shape for n in net.weight_kinds()}
        out.append(Member(net, pruning.dense_mask(shapes, device), data_seed=0))
    return out


def _splits(model: str, tiny: bool, have_fashion: bool, device: Any) -> Any:
    from lth_core.nn.data import load_splits
    from lth_core.spec import DatasetSpec

    return load_splits(DatasetSpec(**_dataset(model, tiny, have_fashion))).to(device)


def _cfg(model: str, iterations: int, batch: int) -> Any:
    from lth_core.spec import parse_spec

    spec = parse_spec(
        {
            "model": model,
            "dataset": CIFAR,
            "training": {
                "iterations": iterations,
                "eval_every": iterations,
                "batch_size": batch,
                "lr_milestones": [],  # the schedule does not change the cost of a step
            },
        }
    )
    return spec.training


def timed(model: str, k: int, steps: int, batch: int, splits: Any, device: Any) -> float:
    """Seconds per training iteration of K members (after a warm-up of the same length/10)."""
    import torch

    from lth_core.train.training import train_members

    warm = max(2, steps // 10)
    members = _members(model, k, splits, device)
    train_members(members, splits, _cfg(model, warm, batch), start_iteration=0)
    members = _members(model, k, splits, device)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # One evaluation at the start and one at the end are part of any loop: time them apart.
    started = time.perf_counter()
    train_members(members, splits, _cfg(model, steps, batch), start_iteration=0)
    _sync(device)
    return (time.perf_counter() - started) / steps


def throughput(model: str, tiny: bool, have_fashion: bool, device: Any) -> dict[str, Any]:
    import torch

    steps = 6 if tiny else FULL_STEPS[model]
    batch = 8 if tiny else BATCH[model]
    splits = _splits(model, tiny, have_fashion, device)
    per_step = timed(model, 1, steps, batch, splits, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "model": model,
        "batch_size": batch,
        "iterations": steps,
        "iterations_per_second": 1.0 / per_step,
        "peak_memory_bytes": peak,
    }


def stacking(model: str, tiny: bool, have_fashion: bool, device: Any) -> dict[str, Any]:
    steps = 4 if tiny else STACK_STEPS[model]
    batch = 8 if tiny else BATCH[model]
    splits = _splits(model, tiny, have_fashion, device)
    rows = []
    one = None
    for k in (1, 2) if tiny else (1, 2, 4, 8):
        per_step = timed(model, k, steps, batch, splits, device)
        one = per_step if one is None else one
        rows.append(
            {
                "k": k,
                "seconds_per_iteration": per_step,
                "time_vs_k1": per_step / one,
                "per_member_vs_alone": per_step / one / k,
            }
        )
    return {
        "model": model,
        "iterations": steps,
        "rows": rows,
        "largest_k_within_2x": rows[-1]["time_vs_k1"] <= 2.0,
    }


def bit_stable(tiny: bool, have_fashion: bool, device: Any) -> bool:
    """The same LeNet run twice on this device: identical trained weights."""
    from lth_core.train.training import train_members

    splits = _splits("lenet_300_100", tiny, have_fashion, device)
    digests = []
    for _ in range(2):
        members = _members("lenet_300_100", 1, splits, device)
        cfg = _cfg("lenet_300_100", 4 if tiny else 200, 8 if tiny else 60)
        train_members(members, splits, cfg, start_iteration=0)
        h = hashlib.sha256()
        for t in members[0].model.state_dict().values():
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        digests.append(h.hexdigest())
    return digests[0] == digests[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="A few steps of everything.")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--models", nargs="*", default=None, help="A subset of the four models.")
    args = parser.parse_args(argv)

    import torch

    from lth_core.experiment import resolve_device

    device = resolve_device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    have_fashion = not args.tiny and fashion_available()
    started = time.perf_counter()
    models = ["lenet_300_100", "conv2", "resnet18", "vgg19"]
    stacked = ["lenet_300_100", "conv2"]
    if args.tiny:  # every code path once, on the smallest model (seconds on a CPU)
        models, stacked = ["lenet_300_100"], ["lenet_300_100"]
    if args.models:
        models = [m for m in args.models if m in models or not args.tiny]
        stacked = [m for m in stacked if m in models]
    report: dict[str, Any] = {
        "card": card,
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "tiny": args.tiny,
        "end_to_end": [end_to_end(m, str(device), args.tiny, have_fashion) for m in models],
        "throughput": [throughput(m, args.tiny, have_fashion, device) for m in models],
        "stacking": [stacking(m, args.tiny, have_fashion, device) for m in stacked],
        "bit_stable": bit_stable(args.tiny, have_fashion, device),
    }
    report["seconds"] = time.perf_counter() - started
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "gpu.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.results / "gpu.md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# bench/gpu.py on {r['card']} ({r['device']}, torch {r['torch']}, CUDA {r['cuda']})",
        "",
        f"{'Tiny mode (a smoke test, not a measurement). ' if r['tiny'] else ''}"
        f"Took {r['seconds']:.0f} s. Same LeNet run twice, same bits: {r['bit_stable']}.",
        "",
        "## `lth run` end to end (one pruning level, ticket + random_reinit)",
        "",
        "| model | data | iterations | ok | wall s |",
        "|---|---|---:|---|---:|",
    ]
    for e in r["end_to_end"]:
        lines.append(
            f"| {e['model']} | {e['dataset']} | {e['iterations']} | {e['ok']} | {e['seconds']:.1f} |"
        )
    lines += [
        "",
        "## Training throughput (no evaluation), the paper's batch sizes",
        "",
        "| model | batch | it/s | peak memory MiB |",
        "|---|---:|---:|---:|",
    ]
    for t in r["throughput"]:
        peak = "-" if t["peak_memory_bytes"] is None else f"{t['peak_memory_bytes'] / 2**20:.0f}"
        lines.append(
            f"| {t['model']} | {t['batch_size']} | {t['iterations_per_second']:.0f} | {peak} |"
        )
    lines += [
        "",
        "## Stacking K members (target: K = 8 in at most 2x the time of K = 1)",
        "",
        "| model | K | s/it | time vs K=1 | per member vs alone |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in r["stacking"]:
        for row in s["rows"]:
            lines.append(
                f"| {s['model']} | {row['k']} | {row['seconds_per_iteration'] * 1e3:.2f} ms | "
                f"{row['time_vs_k1']:.2f}x | {row['per_member_vs_alone']:.2f}x |"
            )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
