"""Time to a verified winning ticket: the paper's LeNet protocol against the cheapest setting.

Same data (Fashion-MNIST, LeNet-300-100, Adam 1.2e-3, batch 60, fc 20% / output 10% per level
for the protocol), same seed, one process, everything through `lth_core.experiment`:

1. protocol: `levels` levels (15: 3.6% of weights), the full budget per run, ticket and
   random_reinit at every level, the test set evaluated every 100 iterations;
2. cheap: patience + early-bird masks + target_weights in fewer levels + controls only at the
   verification level + the test set evaluated once per run (test_eval early_stop) + stacking
   where the device pays for it, and `verify` (the final mask retrained under the verification
   rule, with its control), so the ticket it reports is a verified one;
3. each technique alone, against the protocol: patience, early-bird and test_eval run on the
   protocol's first `ablation_levels` levels and are compared with the protocol's cost for
   those same levels (each level's cost is recorded); fewer levels is read off the protocol's
   per-level costs (the same runs, fewer levels); deferred controls is
   read off the protocol's own per-run costs (the control runs it would skip); stacking is one
   level trained stacked against one-by-one.

Then, from the protocol's full-length curves, how often patience P would have stopped before a
later, lower validation minimum, and what that would have cost in test accuracy.

    python bench/time_to_ticket.py            # the paper's budget: 50K iterations (~2 hours here)
    python bench/time_to_ticket.py --quick    # scaled down, <= 12 minutes on a 2-core CPU

Writes bench/results/time_to_ticket.{json,md} (--quick: time_to_ticket-quick.{json,md});
prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from lth_core.spec import _merge, parse_spec  # noqa: E402

# --quick: the full training set (55K train / 5K validation, as in the paper) and a budget of
# 5,000 iterations per run: a 5,000-example subset overfits at once (dense stopped at 400) and
# is no scaled-down copy of the protocol. 5,000 iterations is what fits in 12 minutes here; it
# is NOT a converged budget: on the full-length curves of the committed run the dense network's
# validation minimum is at 4,700 and the 3.6% ticket's at 4,900 (the paper's 50K budget is
# 7-15x its dense early stop), so patience cuts every run short of a later minimum (see the
# patience table of bench/results/time_to_ticket-quick.md). The cheap recipe was chosen on
# validation numbers only (exploratory runs at seed 0): early-bird masks drawn at ~500
# iterations gave 3.6% tickets 0.5-0.7 validation points worse and stopping 2x later than
# masks of levels trained to their patience stop, and 5 levels (49% per level) worse than 8
# (34%), so the cheap setting uses 8 levels with patience and no early-bird (early-bird is
# still measured alone in the ablation).
QUICK = {
    "iterations": 5000,
    "train_subset": None,
    "patience": 3,
    "verify_patience": 10,
    "eb_window": 5,
    "ablation_levels": 2,
    "cheap_levels": 8,
    "cheap_early_bird": False,
}
# The paper's budget. Patience 20 evaluations (2,000 iterations) for the cheap levels and 40
# for verification (and the dense level 0 it is compared with), picked from one exploratory
# run at seed 0 on validation numbers only: dense stopped at 7,200 (val 89.96%), the cheap
# levels at 2,100-3,800, and the 3.6% mask verified (val 90.22% at 3,800; its random_reinit
# 89.80% at 17,100). The ablation trains levels 0-2 only: patience, early-bird and test_eval
# alone on all 9 levels at 50K iterations would be another 1.2M iterations (~45 minutes here).
FULL = {
    "iterations": 50_000,
    "train_subset": None,
    "patience": 20,
    "verify_patience": 40,
    "eb_window": 5,
    "ablation_levels": 2,
    "cheap_levels": 8,
    "cheap_early_bird": False,
}


def base_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The paper's LeNet protocol (only the budget and the training-set size are scaled)."""
    return {
        "model": "lenet_300_100",
        "dataset": {"name": args.dataset, "train_subset": args.train_subset},
        "training": {
            "optimizer": "adam",
            "learning_rate": 1.2e-3,
            "batch_size": 60,
            "iterations": args.iterations,
            "eval_every": 100,
            "stack_runs": "auto",
        },
        "pruning": {"levels": args.levels, "rates": {"fc": 0.2, "output": 0.1}},
        "controls": ["random_reinit"],
        "seed": args.seed,
    }


def cheap_sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each technique as spec sections (merged over the protocol)."""
    return {
        "patience": {"training": {"patience": args.patience}},
        "early_bird": {
            "pruning": {"early_bird": {"distance": args.eb_distance, "window": args.eb_window}}
        },
        "test_eval": {"training": {"test_eval": "early_stop"}},
        "fewer_levels": {
            "pruning": {"levels": args.cheap_levels, "target_weights": args.target_weights}
        },
        "deferred_controls": {"controls_at": "ticket_level"},
    }


def combine(*sections: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in sections:
        out = _merge(out, s)
    return out


def run(name: str, data: dict[str, Any], out: Path, device: str) -> dict[str, Any]:
    """One experiment from scratch; wall seconds measured around the whole of it."""
    from lth_core.experiment import Experiment

    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    spec = parse_spec(data)
    experiment = Experiment(spec, folder, device=device)
    _ = experiment.splits  # data loading is not the method's cost
    started = time.perf_counter()
    experiment.run()
    seconds = time.perf_counter() - started
    results = json.loads(experiment.layout.results.read_text())
    print(f"  {name}: {seconds:.1f} s, {results['cost']['iterations']:,} iterations", flush=True)
    return {"name": name, "seconds": seconds, "results": results, "folder": str(folder)}


def level_cost(results: dict[str, Any], upto: int) -> tuple[int, float]:
    """The protocol's iterations and seconds for levels 0..upto (from its per-level costs)."""
    levels = [s for s in results["levels"] if s["level"] <= upto]
    return (
        sum(s["cost"]["iterations"] for s in levels),
        sum(s["cost"]["seconds"] for s in levels),
    )


def ticket_numbers(folder: str, level: int) -> dict[str, Any]:
    summary = json.loads((Path(folder) / "levels" / f"{level:03d}" / "summary.json").read_text())
    ticket = json.loads(
        (Path(folder) / "levels" / f"{level:03d}" / "runs" / "ticket.json").read_text()
    )
    best = next(p for p in ticket["curve"] if p["iteration"] == ticket["early_stop_iteration"])
    return {
        "level": level,
        "weights_remaining": summary["weights_remaining"],
        "early_stop_iteration": summary["early_stop_iteration"],
        "val_accuracy": best["val_accuracy"],
        "test_accuracy": summary["early_stop_test_accuracy"],
    }


def patience_misses(folder: str, patiences: list[int]) -> list[dict[str, Any]]:
    """From full-length curves: where patience P would have stopped, and whether a later
    evaluation had a lower validation loss (the minimum patience would have missed)."""
    runs = sorted(Path(folder).glob("levels/*/runs/*.json"))
    curves = [json.loads(p.read_text())["curve"] for p in runs]
    out = []
    for p in patiences:
        missed, acc_lost, iters_early = 0, [], []
        for curve in curves:
            best, since, stop = 0, 0, len(curve) - 1
            for i in range(1, len(curve)):
                if curve[i]["val_loss"] < curve[best]["val_loss"]:
                    best, since = i, 0
                else:
                    since += 1
                if since >= p:
                    stop = i
                    break
            full = min(range(len(curve)), key=lambda i: (curve[i]["val_loss"], i))
            if full > stop:
                missed += 1
                acc_lost.append(curve[full]["test_accuracy"] - curve[best]["test_accuracy"])
                iters_early.append(curve[full]["iteration"] - curve[best]["iteration"])
        out.append(
            {
                "patience": p,
                "runs": len(curves),
                "missed": missed,
                "mean_test_accuracy_lost": sum(acc_lost) / len(acc_lost) if acc_lost else 0.0,
                "max_test_accuracy_lost": max(acc_lost) if acc_lost else 0.0,
                "mean_iterations_of_the_missed_minimum_later": (
                    sum(iters_early) / len(iters_early) if iters_early else 0.0
                ),
            }
        )
    return out


def stacking_factor(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One pruned level (ticket + random_reinit) stacked against one-by-one, same spec."""
    from lth_core.experiment import Experiment

    data = _merge(base_spec(args), {"pruning": {"levels": 1}})
    data["training"]["iterations"] = max(200, args.iterations // 4)
    times = {}
    for mode, stack in (("one_by_one", False), ("stacked", True)):
        folder = out / f"stacking_{mode}"
        shutil.rmtree(folder, ignore_errors=True)
        experiment = Experiment(parse_spec(data), folder, device=args.device)
        _ = experiment.splits
        experiment.prepare_level(0)
        experiment.train_runs(0)
        experiment.finish_level(0)
        experiment.prepare_level(1)
        started = time.perf_counter()
        experiment.train_runs(1, stack=stack)
        times[mode] = time.perf_counter() - started
    return {
        "iterations": data["training"]["iterations"],
        "one_by_one_seconds": times["one_by_one"],
        "stacked_seconds": times["stacked"],
        "factor": times["one_by_one"] / times["stacked"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Scaled-down budget (<= 12 min).")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--levels", type=int, default=15, help="Protocol levels (15: 3.6%%).")
    parser.add_argument("--cheap-levels", type=int, default=None)
    parser.add_argument(
        "--cheap-early-bird",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Early-bird masks in the cheap setting (always measured alone in the ablation).",
    )
    parser.add_argument("--target-weights", type=float, default=0.036)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--verify-patience", type=int, default=None)
    parser.add_argument(
        "--verify-repeats",
        type=int,
        default=3,
        help="verify.repeats: times the verification level and the dense reference train, "
        "each with its own data order (counted in the cheap setting's cost).",
    )
    parser.add_argument("--eb-distance", type=float, default=0.1)
    parser.add_argument("--eb-window", type=int, default=None)
    parser.add_argument("--ablation-levels", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "time_to_ticket")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--no-ablation", action="store_true", help="Protocol and cheap only.")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="Only the cheap recipe, once per seed (each with its own dense level 0), against "
        "the protocol's cost already recorded in the results file (seeds other than the one "
        "the recipe was chosen on: 0).",
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.seeds:
        from time_to_ticket_seeds import seeds_main

        return seeds_main(args, base_spec, cheap_sections, combine, run)

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    base = base_spec(args)
    sections = cheap_sections(args)
    in_cheap = [n for n in sections if n != "early_bird" or args.cheap_early_bird]
    cheap_data = combine(
        base,
        *(sections[n] for n in in_cheap),
        {"verify": {"patience": args.verify_patience, "repeats": args.verify_repeats}},
    )
    load_before = os.getloadavg()
    started = time.perf_counter()
    print("protocol and cheap:", flush=True)
    protocol = run("protocol", base, args.out, args.device)
    cheap = run("cheap", cheap_data, args.out, args.device)

    p_res, c_res = protocol["results"], cheap["results"]
    verify_level = args.cheap_levels
    cheap_ticket = ticket_numbers(cheap["folder"], verify_level)
    sparsity = cheap_ticket["weights_remaining"]
    protocol_level = min(p_res["levels"], key=lambda s: abs(s["weights_remaining"] - sparsity))[
        "level"
    ]
    protocol_ticket = ticket_numbers(protocol["folder"], protocol_level)

    ablation: dict[str, Any] = {}
    if not args.no_ablation:
        print("each technique alone:", flush=True)
        upto = args.ablation_levels or args.cheap_levels
        short = _merge(base, {"pruning": {"levels": upto}})
        ref_it, ref_s = level_cost(p_res, upto)
        for name in ("patience", "early_bird", "test_eval"):
            r = run(f"alone_{name}", combine(short, sections[name]), args.out, args.device)
            ablation[name] = {
                "compared_with": f"protocol levels 0-{upto}",
                "iterations_factor": ref_it / r["results"]["cost"]["iterations"],
                # training seconds on both sides (the protocol's are per level)
                "seconds_factor": ref_s / r["results"]["cost"]["seconds"],
            }
        # Fewer levels at the full budget are the protocol's own levels 0..cheap_levels (the
        # same runs: every level trains the same budget), read off its per-level costs.
        few_it, few_s = level_cost(p_res, args.cheap_levels)
        ablation["fewer_levels"] = {
            "compared_with": f"protocol, its levels 0-{args.cheap_levels} against all",
            "iterations_factor": p_res["cost"]["iterations"] / few_it,
            "seconds_factor": p_res["cost"]["seconds"] / few_s,
        }
        controls = [
            json.loads(p.read_text())
            for p in Path(protocol["folder"]).glob("levels/*/runs/random_reinit.json")
            if int(p.parent.parent.name) != args.levels
        ]
        skip_it = sum(c["cost"]["iterations"] for c in controls)
        skip_s = sum(c["seconds"] for c in controls)
        ablation["deferred_controls"] = {
            "compared_with": "protocol, its own per-run costs (the control runs it skips)",
            "iterations_factor": p_res["cost"]["iterations"]
            / (p_res["cost"]["iterations"] - skip_it),
            "seconds_factor": p_res["cost"]["seconds"] / (p_res["cost"]["seconds"] - skip_s),
        }
        stack = stacking_factor(args, args.out)
        ablation["stacking"] = {
            "compared_with": "one level, ticket + random_reinit one by one",
            "iterations_factor": 1.0,
            "seconds_factor": stack["factor"],
            **stack,
        }

    summary = {
        "settings": {
            "command": "python bench/time_to_ticket.py" + (" --quick" if args.quick else ""),
            "iterations": args.iterations,
            "train_subset": args.train_subset,
            "protocol_levels": args.levels,
            "cheap_levels": args.cheap_levels,
            "ablation_levels": args.ablation_levels or args.cheap_levels,
            "target_weights": args.target_weights,
            "patience": args.patience,
            "verify_patience": args.verify_patience,
            "verify_repeats": args.verify_repeats,
            "early_bird": {"distance": args.eb_distance, "window": args.eb_window},
            "cheap_techniques": in_cheap,
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "seed": args.seed,
            "device": args.device,
            "threads": args.threads,
            "torch": torch.__version__,
            "cheap_spec": parse_spec(cheap_data).model_dump(mode="json"),
            "cheap_rates": c_res.get("pruning_rates"),
        },
        "protocol": {
            "seconds": protocol["seconds"],
            "iterations": p_res["cost"]["iterations"],
            "ticket_at_same_sparsity": protocol_ticket,
        },
        "cheap": {
            "seconds": cheap["seconds"],
            "iterations": c_res["cost"]["iterations"],
            "verified": c_res.get("verified"),
            "ticket_level": c_res.get("ticket_level"),
            "verified_ticket": cheap_ticket,
            "mask_drawn_at": {
                s["level"]: s.get("mask_drawn_at") for s in c_res["levels"] if "mask_drawn_at" in s
            },
        },
        "speedup": protocol["seconds"] / cheap["seconds"],
        "iterations_factor": p_res["cost"]["iterations"] / c_res["cost"]["iterations"],
        "ablation": ablation,
        "patience_analysis": patience_misses(
            protocol["folder"], sorted({args.patience, args.verify_patience, 2, 10})
        ),
        "bench_seconds": time.perf_counter() - started,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stem = "time_to_ticket-quick" if args.quick else "time_to_ticket"  # --quick never clobbers
    (args.results / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.results / f"{stem}.md").write_text(markdown(summary))
    line = {
        "protocol_seconds": round(protocol["seconds"], 2),
        "cheap_seconds": round(cheap["seconds"], 2),
        "speedup": round(summary["speedup"], 2),
        "weights_remaining": round(sparsity, 5),
        "protocol_test_accuracy": protocol_ticket["test_accuracy"],
        "cheap_verified_test_accuracy": cheap_ticket["test_accuracy"],
        "verified": c_res.get("verified"),
    }
    print(json.dumps(line), flush=True)
    return summary


def markdown(s: dict[str, Any]) -> str:
    st, p, c = s["settings"], s["protocol"], s["cheap"]
    pt, ct = p["ticket_at_same_sparsity"], c["verified_ticket"]
    lines = [
        "# Time to a verified winning ticket (bench/time_to_ticket.py)",
        "",
        *(
            [
                "**Not converged: `--quick` runs 5,000 iterations per run, below the dense "
                "network's validation minimum on full-length curves; its verdicts and ratios "
                "say the code runs, not what the recipe achieves.**",
                "",
            ]
            if st["command"].endswith("--quick")
            else []
        ),
        f"Command: `{st['command']}`: LeNet-300-100 on Fashion-MNIST, Adam 1.2e-3, batch 60, "
        f"{st['iterations']} iterations per run, training subset {st['train_subset'] or 'all'}, "
        f"seed {st['seed']}, {st['device']} with {st['threads']} thread(s), torch {st['torch']}. "
        "One process, one run of each configuration: the ratios are the result, not the seconds.",
        f"Machine load average (1, 5, 15 min) before: "
        f"{', '.join(f'{x:.2f}' for x in st['load_average_before'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in st['load_average_after'])}; "
        f"the whole command took {s['bench_seconds']:.0f} s.",
        "",
        f"- protocol: {st['protocol_levels']} levels, fc 20% / output 10% per level, ticket + "
        "random_reinit at every level, full budget, test set at every evaluation.",
        f"- cheap: {st['cheap_levels']} levels to target_weights {st['target_weights']} (rates "
        f"{st['cheap_rates']}), patience {st['patience']}, "
        + (
            f"early-bird {st['early_bird']}"
            if "early_bird" in st["cheap_techniques"]
            else f"no early-bird (measured alone below with {st['early_bird']})"
        )
        + ", test_eval early_stop, controls only at the verification level, "
        f"verify with patience {st['verify_patience']} (level 0 trains under the same rule).",
        "",
        "| | wall s | iterations | ratio (s) | ratio (it) |",
        "|---|---:|---:|---:|---:|",
        f"| protocol | {p['seconds']:.1f} | {p['iterations']:,} | 1 | 1 |",
        f"| cheap | {c['seconds']:.1f} | {c['iterations']:,} | {s['speedup']:.2f}x | "
        f"{s['iterations_factor']:.2f}x |",
        "",
        "| ticket | weights remaining | early-stop it | val acc % | test acc % |",
        "|---|---:|---:|---:|---:|",
        f"| protocol level {pt['level']} | {100 * pt['weights_remaining']:.2f}% | "
        f"{pt['early_stop_iteration']} | {100 * pt['val_accuracy']:.2f} | "
        f"{100 * pt['test_accuracy']:.2f} |",
        f"| cheap, verification level {ct['level']} ({'verified' if c['verified'] else 'NOT verified'}) "
        f"| {100 * ct['weights_remaining']:.2f}% | {ct['early_stop_iteration']} | "
        f"{100 * ct['val_accuracy']:.2f} | {100 * ct['test_accuracy']:.2f} |",
        "",
        f"Early-bird masks drawn at (level: iteration): {c['mask_drawn_at']}.",
        "",
    ]
    if s["ablation"]:
        lines += [
            "## Each technique alone",
            "",
            "| technique | wall factor | iteration factor | compared with |",
            "|---|---:|---:|---|",
        ]
        for name, a in s["ablation"].items():
            lines.append(
                f"| {name} | {a['seconds_factor']:.2f}x | {a['iterations_factor']:.2f}x | "
                f"{a['compared_with']} |"
            )
        lines.append("")
    lines += [
        "## Patience on the protocol's full-length curves",
        "",
        "| patience (evaluations) | runs | stopped before a later, lower val minimum | mean test "
        "acc lost there (points) | max lost | that minimum came later by (it) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for a in s["patience_analysis"]:
        lines.append(
            f"| {a['patience']} | {a['runs']} | {a['missed']} | "
            f"{100 * a['mean_test_accuracy_lost']:+.2f} | {100 * a['max_test_accuracy_lost']:+.2f} | "
            f"{a['mean_iterations_of_the_missed_minimum_later']:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
