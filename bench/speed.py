"""How fast lth_core trains, as ratios measured in one process: against the usual loop and the FLOP floor.

    python bench/speed.py                       # defaults: ~10 minutes on 2 CPU cores
    python bench/speed.py --rounds 1 --lenet-iterations 50 --conv-iterations 2 \\
        --level-iterations 100 --stack-iterations 20 --stack-rounds 1 --out /tmp/speed.json

Every number that is compared is measured in this process, in rounds that alternate the
contenders, and the best round of each counts (on a shared machine the least disturbed
round is the best estimate of what the code costs; the median is recorded as well):
- training step: lth_core's `train` vs bench/reference_loop.py, LeNet-300-100 on
  Fashion-MNIST and Conv-2 on CIFAR-shaped synthetic data, batch 60, same iterations
  (evaluation sets cut to one batch so that training is what is timed; both loops still
  evaluate them before and after training, as the engine always does);
- the FLOP floor: one step's floating-point work (forward plus two backward products per
  layer) divided by the best rate of a 2048x2048 matmul measured here, at the start and after
  every round, with the same torch threads as the loops (by default all cores: the
  machine's limit);
- a whole level: the ticket and its random_reinit control, each trained with evaluations on
  the full validation and test sets every `--eval-every` iterations, through the Experiment
  API as a worker runs it (stacked where should_stack says so; files written included) vs
  the reference loop;
- stacking: K = 1, 2, 4, 8 LeNets trained by lth_core.train.stacked against the same K trained one
  at a time, in `--stack-rounds` short rounds of their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from reference_loop import (  # noqa: E402
    ImageDataset,
    ReferenceData,
    mnist_transform,
    tensor_transform,
    train_reference,
)
from torch.utils.data import Subset  # noqa: E402

from lth_core import pruning  # noqa: E402
from lth_core.experiment import Experiment  # noqa: E402
from lth_core.nn.data import Splits, load_splits  # noqa: E402
from lth_core.nn.data.base import _SPLIT_SEED  # noqa: E402
from lth_core.nn.data.idx import find_idx_files, read_idx  # noqa: E402
from lth_core.nn.data.mnist import default_root  # noqa: E402
from lth_core.nn.models import build_model  # noqa: E402
from lth_core.spec import ExperimentSpec, parse_spec  # noqa: E402
from lth_core.storage.files import save_tensors  # noqa: E402
from lth_core.train.stacked import should_stack, train_stacked  # noqa: E402
from lth_core.train.training import RunHooks, train  # noqa: E402

BATCH = 60
LEVEL_ROUNDS = 7  # the level whose mask the benchmarks use: 21% of LeNet's weights remain


# ----------------------------------------------------------------------------- measuring


class Timings:
    """Seconds per named measurement, one entry per round."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def time(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = fn()
        self.samples.setdefault(name, []).append(time.perf_counter() - started)
        return out

    def best(self, name: str) -> float:
        return min(self.samples[name])

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The best rate of an n x n float32 matmul: what this machine's cores can sustain."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def step_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> int:
    """Forward multiply-adds of every conv and linear layer x2 (FLOPs), x3 for a training step.

    The x3 is the issue's convention: a forward product and two backward ones (input and
    weight gradients) per layer, although the first layer's input gradient is never needed.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * output.shape[0] * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_output = (module.in_channels // module.groups) * kh * kw
            total += 2 * output.numel() * per_output

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    with torch.no_grad():
        model(torch.zeros(batch, *input_shape))
    for h in handles:
        h.remove()
    return 3 * total


# ----------------------------------------------------------------------------- setups


def lenet_spec(iterations: int, eval_every: int) -> ExperimentSpec:
    return parse_spec(
        {
            "model": "lenet_300_100",
            "dataset": {"name": "fashion_mnist"},
            "training": {"iterations": iterations, "eval_every": eval_every, "batch_size": BATCH},
            "pruning": {"levels": 0},
        }
    )


def conv_spec(iterations: int) -> ExperimentSpec:
    return parse_spec(
        {
            "model": "conv2",
            "dataset": {
                "name": "synthetic",
                "validation_size": BATCH,
                "synthetic": {"input_shape": [3, 32, 32], "train_size": 3000, "test_size": BATCH},
            },
            "training": {"iterations": iterations, "eval_every": iterations, "batch_size": BATCH},
            "pruning": {"levels": 0},
        }
    )


def level_mask(spec: ExperimentSpec, theta0: dict[str, torch.Tensor], kinds: dict[str, str]):
    """The mask magnitude pruning of theta_0 gives after LEVEL_ROUNDS rounds (sparsity only)."""
    dense = pruning.dense_mask({n: theta0[n].shape for n in kinds})
    return pruning.prune_level(theta0, dense, kinds, spec.pruning, rounds=LEVEL_ROUNDS)


def tiny_eval(splits: Splits) -> Splits:
    """The same training set with one-batch evaluation sets: times training, not evaluation."""
    return dataclasses.replace(
        splits,
        val_x=splits.val_x[:BATCH],
        val_y=splits.val_y[:BATCH],
        test_x=splits.test_x[:BATCH],
        test_y=splits.test_y[:BATCH],
    )


def fashion_reference_data(splits_validation: int) -> ReferenceData:
    """Raw uint8 Fashion-MNIST, split exactly as the engine splits it, behind per-sample PIL."""
    for folder in (default_root() / "fashion_mnist", Path("/usr/share/datasets/fashion-mnist")):
        files = find_idx_files(folder)
        if files:
            break
    else:
        raise SystemExit("Fashion-MNIST idx files not found (see lth_core/nn/data/mnist.py)")
    images, labels = read_idx(files["train_x"]), read_idx(files["train_y"])
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(_SPLIT_SEED))
    val_idx, train_idx = order[:splits_validation], order[splits_validation:]
    transform = mnist_transform(0.2860, 0.3530)
    return ReferenceData(
        train=ImageDataset(images[train_idx], labels[train_idx], transform),
        val=ImageDataset(images[val_idx], labels[val_idx], transform),
        test=ImageDataset(read_idx(files["test_x"]), read_idx(files["test_y"]), transform),
    )


def tiny_reference(data: ReferenceData) -> ReferenceData:
    """The reference's counterpart of tiny_eval: one-batch evaluation sets."""
    return ReferenceData(
        train=data.train,
        val=Subset(data.val, range(BATCH)),
        test=Subset(data.test, range(BATCH)),
    )


def tensor_reference_data(splits: Splits) -> ReferenceData:
    transform = tensor_transform(splits.train_x.shape[1])
    return ReferenceData(
        train=ImageDataset(splits.train_x, splits.train_y, transform),
        val=ImageDataset(splits.val_x, splits.val_y, transform),
        test=ImageDataset(splits.test_x, splits.test_y, transform),
    )


def lth_train(model_name: str, spec: ExperimentSpec, splits: Splits, mask, seed: int) -> None:
    model = build_model(model_name, splits.input_shape, splits.num_classes, seed=seed)
    train(model, mask, splits, spec.training, augment=False, start_iteration=0,
          data_seed=1, augment_seed=0, hooks=RunHooks())  # fmt: skip


def ref_train(model_name, spec, data, mask, seed, eval_every) -> None:
    shape = spec.dataset.input_shape
    model = build_model(model_name, shape, spec.dataset.num_classes, seed=seed)
    train_reference(model, mask, data, learning_rate=spec.training.learning_rate,
                    batch_size=BATCH, iterations=spec.training.iterations,
                    eval_every=eval_every, seed=1)  # fmt: skip


# ----------------------------------------------------------------------------- benchmark


def run(args: argparse.Namespace) -> dict[str, Any]:
    t = Timings()
    rates = [matmul_gflops()]
    results: dict[str, Any] = {"models": {}, "level": {}, "stacking": {}}

    # LeNet and Conv-2 training steps --------------------------------------------------
    lenet = lenet_spec(args.lenet_iterations, args.lenet_iterations)
    lenet_splits = load_splits(lenet.dataset)
    lenet_theta0 = build_model("lenet_300_100", (1, 28, 28), 10, seed=0).state_dict()
    lenet_kinds = build_model("lenet_300_100", (1, 28, 28), 10).weight_kinds()
    lenet_mask = level_mask(lenet, lenet_theta0, lenet_kinds)
    lenet_ref = fashion_reference_data(lenet.dataset.validation_size)
    fast_lenet = tiny_eval(lenet_splits)
    tiny_lenet_ref = tiny_reference(lenet_ref)
    n = args.lenet_iterations
    contenders: list[tuple[str, Callable[[], Any]]] = [
        ("lenet/lth", lambda: lth_train("lenet_300_100", lenet, fast_lenet, lenet_mask, 0)),
        ("lenet/ref", lambda: ref_train("lenet_300_100", lenet, tiny_lenet_ref, lenet_mask, 0, n)),
    ]
    if args.conv_iterations:
        conv = conv_spec(args.conv_iterations)
        conv_splits = load_splits(conv.dataset)
        conv_model = build_model("conv2", (3, 32, 32), 10, seed=0)
        conv_mask = level_mask(conv, conv_model.state_dict(), conv_model.weight_kinds())
        conv_ref = tensor_reference_data(conv_splits)  # its evaluation sets are one batch
        c = args.conv_iterations
        contenders += [
            ("conv2/lth", lambda: lth_train("conv2", conv, conv_splits, conv_mask, 0)),
            ("conv2/ref", lambda: ref_train("conv2", conv, conv_ref, conv_mask, 0, c)),
        ]

    # A whole level: ticket + random_reinit with full evaluations -----------------------
    level = lenet_spec(args.level_iterations or args.eval_every, args.eval_every)  # used if > 0
    work = Path(tempfile.mkdtemp(prefix="lth-speed-"))
    mask_file = work / "mask.safetensors"
    save_tensors(mask_file, lenet_mask)
    level_dirs = iter(range(10_000))

    def lth_level() -> None:
        exp = Experiment(level, work / f"level{next(level_dirs)}", device="cpu",
                         initial_mask=mask_file)  # fmt: skip
        exp._splits = lenet_splits  # loaded once above; loading is not part of a level
        exp.train_runs(
            0
        )  # stacked where lth_core.train.stacked.should_stack says so, as a worker does

    def ref_level() -> None:
        ref_train("lenet_300_100", level, lenet_ref, lenet_mask, 0, eval_every=args.eval_every)
        ref_train("lenet_300_100", level, lenet_ref, lenet_mask, 1, eval_every=args.eval_every)

    if args.level_iterations:
        contenders += [("level/lth", lth_level), ("level/ref", ref_level)]

    # Stacking: K LeNets at once vs one at a time ----------------------------------------
    stack = lenet_spec(max(args.stack_iterations, 1), max(args.stack_iterations, 1))
    stack_masks = []
    for i in range(max(args.stack_k)):
        g = torch.Generator().manual_seed(i)
        stack_masks.append(pruning.random_mask_like(lenet_mask, g))

    def stacked(k: int) -> None:
        models = [build_model("lenet_300_100", (1, 28, 28), 10, seed=i) for i in range(k)]
        train_stacked(models, stack_masks[:k], fast_lenet, stack.training, start_iteration=0,
                      data_seeds=[1] * k, hooks=[RunHooks() for _ in range(k)])  # fmt: skip

    def one_at_a_time(k: int) -> None:
        for i in range(k):
            lth_train("lenet_300_100", stack, fast_lenet, stack_masks[i], i)

    # Each K against the same K members trained one at a time: equal work, so both
    # contenders' rounds last about as long and are equally exposed to the machine's drift.
    stack_contenders: list[tuple[str, Callable[[], Any]]] = []
    if args.stack_iterations:
        for k in args.stack_k:
            stack_contenders.append((f"stack/k{k}", lambda k=k: stacked(k)))
            stack_contenders.append((f"stack/one_at_a_time{k}", lambda k=k: one_at_a_time(k)))

    # Warm up every contender once (lazy initialisation, allocator), then alternate rounds.
    # The matmul rate is measured in every round too and the best counts: the floor is then
    # the machine's least disturbed rate, the strictest one.
    for name, fn in contenders + stack_contenders:
        if name.startswith(("lenet", "stack")):
            fn()
    for round_ in range(args.rounds):
        for name, fn in contenders:
            if name.startswith("level/") and round_ >= args.level_rounds:
                continue  # a reference level takes minutes: fewer rounds of it
            t.time(name, fn)
        rates.append(matmul_gflops())
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    # Stacking alternates its own short rounds, many of them: ratios near 1 are read from
    # many back-to-back pairs, on a machine whose speed drifts.
    for _ in range(args.stack_rounds if stack_contenders else 0):
        for name, fn in stack_contenders:
            t.time(name, fn)
        rates.append(matmul_gflops())
    gflops = max(rates)
    results["matmul_gflops"] = {"best": gflops, "median": statistics.median(rates), "all": rates}

    def model_row(key: str, model_name: str, spec: ExperimentSpec, shape) -> dict[str, Any]:
        iterations = spec.training.iterations
        flops = step_flops(build_model(model_name, shape, 10), shape, BATCH)
        lth = t.best(f"{key}/lth") / iterations
        ref = t.best(f"{key}/ref") / iterations
        floor = flops / (gflops * 1e9)
        return {
            "iterations": iterations,
            "step_flops": flops,
            "floor_ms": floor * 1e3,
            "lth_step_ms": lth * 1e3,
            "lth_step_ms_median": t.median(f"{key}/lth") / iterations * 1e3,
            "reference_step_ms": ref * 1e3,
            "reference_step_ms_median": t.median(f"{key}/ref") / iterations * 1e3,
            "lth_iterations_per_s": 1 / lth,
            "reference_iterations_per_s": 1 / ref,
            "speedup_vs_reference": ref / lth,
            "lth_over_floor": lth / floor,
            "reference_over_floor": ref / floor,
        }

    results["models"]["lenet_300_100"] = model_row("lenet", "lenet_300_100", lenet, (1, 28, 28))
    if args.conv_iterations:
        results["models"]["conv2"] = model_row("conv2", "conv2", conv, (3, 32, 32))
    if args.level_iterations:
        lth, ref = t.best("level/lth"), t.best("level/ref")
        results["level"] = {
            "runs": ["ticket", "random_reinit"],
            "iterations_per_run": args.level_iterations,
            "eval_every": args.eval_every,
            "evaluation_examples": lenet.dataset.validation_size + lenet_splits.test_x.shape[0],
            "weights_remaining": pruning.fraction_remaining(lenet_mask),
            "lth_stacked": should_stack(
                "lenet_300_100", level.training, False, torch.device("cpu"), 2
            ),
            "lth_seconds": lth,
            "lth_seconds_median": t.median("level/lth"),
            "reference_seconds": ref,
            "reference_seconds_median": t.median("level/ref"),
            "speedup_vs_reference": ref / lth,
        }
    if args.stack_iterations:
        results["stacking"] = stacking_summary(t, args.stack_k, args.stack_iterations)
    results["samples_seconds"] = t.samples
    return results


def stacking_summary(t: Timings, ks: list[int], iterations: int) -> dict[str, Any]:
    """Stacked K vs the same K one at a time: best rounds, medians, and the median of the
    per-round ratios (each round's two contenders ran back to back, so their ratio is the
    least exposed to the machine drifting; K=1 is the same code on both sides and shows the
    noise)."""

    def row(k: int) -> dict[str, Any]:
        stacked, alone = f"stack/k{k}", f"stack/one_at_a_time{k}"
        paired = [a / b for a, b in zip(t.samples[stacked], t.samples[alone], strict=True)]
        return {
            "seconds": t.best(stacked),
            "one_at_a_time_seconds": t.best(alone),
            "per_member_seconds": t.best(stacked) / k,
            "per_member_vs_one_at_a_time": t.best(stacked) / t.best(alone),
            "median_ratio": t.median(stacked) / t.median(alone),
            "paired_median_ratio": statistics.median(paired),
            "paired_ratios": paired,
        }

    return {
        "model": "lenet_300_100",
        "device": "cpu",
        "iterations": iterations,
        "members": {str(k): row(k) for k in ks},
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measurement, lth_core, reference, ratio) rows shared by the console and markdown tables."""
    rows = []
    for name, row in results["models"].items():
        rows.append((
            f"{name} step (batch {BATCH})",
            f"{row['lth_step_ms']:.3f} ms ({row['lth_iterations_per_s']:.0f} it/s)",
            f"{row['reference_step_ms']:.3f} ms ({row['reference_iterations_per_s']:.0f} it/s)",
            f"{row['speedup_vs_reference']:.2f}x faster",
        ))  # fmt: skip
        rows.append((
            f"{name} step vs FLOP floor",
            f"{row['lth_over_floor']:.2f}x floor",
            f"{row['reference_over_floor']:.2f}x floor",
            f"floor {row['floor_ms']:.3f} ms ({row['step_flops'] / 1e6:.1f} MFLOP)",
        ))  # fmt: skip
    if results["level"]:
        lv = results["level"]
        rows.append((
            f"whole level: ticket + reinit, {lv['iterations_per_run']} it each, "
            f"eval every {lv['eval_every']}",
            f"{lv['lth_seconds']:.2f} s",
            f"{lv['reference_seconds']:.2f} s",
            f"{lv['speedup_vs_reference']:.2f}x faster",
        ))  # fmt: skip
    if results["stacking"]:
        st = results["stacking"]
        for k, row in st["members"].items():
            k_int = int(k)
            rows.append((
                f"stacked LeNet K={k}, per member",
                f"{row['per_member_seconds'] / st['iterations'] * 1e3:.3f} ms/step",
                "one at a time "
                f"{row['one_at_a_time_seconds'] / k_int / st['iterations'] * 1e3:.3f} ms/step",
                f"{row['paired_median_ratio']:.2f}x paired median "
                f"(best {row['per_member_vs_one_at_a_time']:.2f}x)",
            ))  # fmt: skip
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# lth_core speed",
        "",
        f"Command: `{results['command']}`; {m['cpu']}, {m['torch_threads']} torch thread(s), "
        f"torch {m['torch']}; 2048x2048 matmul: {results['matmul_gflops']['best']:.0f} GFLOP/s. "
        "Best of the rounds (stacking: median of back-to-back pairs); medians in the JSON.",
        "",
        "| measurement | lth_core | reference loop | ratio |",
        "|---|---:|---:|---:|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table_rows(results)],
        "",
    ]
    return "\n".join(lines)


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lth_core speed (matmul {results['matmul_gflops']['best']:.0f} GFLOP/s)")
    for col in ("measurement", "lth_core", "reference", "ratio"):
        table.add_column(col, justify="right" if col != "measurement" else "left")
    for row in table_rows(results):
        table.add_row(*row)
    Console(width=140).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lenet-iterations", type=int, default=500)
    parser.add_argument("--conv-iterations", type=int, default=20, help="0: skip Conv-2")
    parser.add_argument("--level-iterations", type=int, default=1000, help="0: skip")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--stack-iterations", type=int, default=300, help="0: skip")
    parser.add_argument("--stack-rounds", type=int, default=15)
    parser.add_argument("--stack-k", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--level-rounds", type=int, default=3, help="rounds of the whole level")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "speed.json")
    parser.add_argument(
        "--render-only", action="store_true", help="re-print and re-write the markdown from --out"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads(args.out.read_text())
        if results.get("stacking"):  # derived fields are recomputed from the recorded samples
            timings = Timings()
            timings.samples = results["samples_seconds"]
            ks = [int(k) for k in results["stacking"]["members"]]
            results["stacking"] = stacking_summary(timings, ks, results["stacking"]["iterations"])
            args.out.write_text(json.dumps(results, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(results))
        print_table(results)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    results["machine"] = machine()
    results["command"] = " ".join(
        ["python bench/speed.py", *(argv if argv is not None else sys.argv[1:])]
    )
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print_table(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
