"""The cheap recipe on seeds it was not chosen on (bench/time_to_ticket.py --seeds 1 2 3).

Each seed runs the cheap experiment alone: its own dense level 0 (trained under the
verification rule), its cheap levels and the verification level with its random_reinit
control. Its verdict is the engine's (lth_core.results.verification): yes (verified), no, or
inconclusive, with the interval of each comparison. The protocol is not rerun per seed (about
1.6 hours each here): its cost in iterations is the same for every seed (every run trains the
full budget), and its per-iteration time was measured once, in the run recorded in the
results file; the speedup of each seed is against that.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lth_core.spec import parse_spec


def _verdict(results: dict[str, Any]) -> dict[str, Any]:
    decision = results["ticket"]
    record = decision.get("verification") or {}
    comparisons = record.get("comparisons", {})
    return {
        "verdict": decision.get("verdict") or ("no" if record else None),
        "verified": results.get("verified"),
        "reason": decision.get("reason"),
        "comparisons": {
            name: {k: c[k] for k in ("verdict", "effect", "interval", "test", "n", "why")}
            for name, c in comparisons.items()
        },
    }


def _numbers(folder: str, level: int) -> dict[str, Any]:
    root = Path(folder) / "levels" / f"{level:03d}"
    summary = json.loads((root / "summary.json").read_text())
    return {
        "level": level,
        "weights_remaining": summary["weights_remaining"],
        "early_stop_iteration": summary["early_stop_iteration"],
        "val_accuracy": summary["early_stop_val_accuracy"],
        "test_accuracy": summary["early_stop_test_accuracy"],
    }


def seeds_main(
    args: Any,
    base_spec: Callable[[Any], dict[str, Any]],
    cheap_sections: Callable[[Any], dict[str, dict[str, Any]]],
    combine: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    stem = "time_to_ticket-quick" if args.quick else "time_to_ticket"
    path = args.results / f"{stem}.json"
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    protocol = recorded.get("protocol", {})
    per_iteration = (
        protocol["seconds"] / protocol["iterations"] if protocol.get("iterations") else None
    )
    rows = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    for seed in args.seeds:
        args.seed = seed
        sections = cheap_sections(args)
        in_cheap = [n for n in sections if n != "early_bird" or args.cheap_early_bird]
        data = combine(
            base_spec(args),
            *(sections[n] for n in in_cheap),
            {"verify": {"patience": args.verify_patience}},
        )
        parse_spec(data)
        print(f"seed {seed}:", flush=True)
        done = run(f"cheap_seed{seed}", data, args.out, args.device)
        res = done["results"]
        level = args.cheap_levels
        iterations = res["cost"]["iterations"]
        row = {
            "seed": seed,
            "seconds": done["seconds"],
            "iterations": iterations,
            "iterations_factor": protocol["iterations"] / iterations if protocol else None,
            "speedup": protocol["iterations"] * per_iteration / done["seconds"]
            if per_iteration
            else None,
            "ticket": _numbers(done["folder"], level),
            "dense": _numbers(done["folder"], 0),
            **_verdict(res),
        }
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("seed", "verdict", "iterations")}), flush=True)
        # Written after every seed: a long run stopped early keeps the seeds it finished.
        recorded = _write(args, recorded, rows, load_before, started, protocol, per_iteration)
    return recorded


def _write(
    args: Any,
    recorded: dict[str, Any],
    rows: list[dict[str, Any]],
    load_before: tuple[float, float, float],
    started: float,
    protocol: dict[str, Any],
    per_iteration: float | None,
) -> dict[str, Any]:
    stem = "time_to_ticket-quick" if args.quick else "time_to_ticket"
    path = args.results / f"{stem}.json"
    quick = " --quick" if args.quick else ""
    seeds = {
        "settings": {
            "command": f"python bench/time_to_ticket.py{quick} --seeds "
            + " ".join(str(s) for s in args.seeds),
            "seeds": [r["seed"] for r in rows],
            "asked_for": list(args.seeds),
            "chosen_on_seed": 0,
            "threads": args.threads,
            "device": args.device,
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "protocol_iterations": protocol.get("iterations"),
            "protocol_seconds_per_iteration": per_iteration,
            "converged": not args.quick,
        },
        "seeds": rows,
        "bench_seconds": time.perf_counter() - started,
    }
    recorded["seeds_check"] = seeds
    settings = recorded.setdefault("settings", {})
    settings["seeds"] = [settings.get("seed", 0), *(r["seed"] for r in rows)]
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded, indent=1) + "\n")
    md = args.results / f"{stem}.md"
    text = md.read_text() if md.is_file() else ""
    head = text.split("\n## The recipe on other seeds")[0].rstrip("\n")
    md.write_text(head + "\n\n" + "\n".join(markdown(seeds)) + "\n")
    return recorded


def _iv(c: dict[str, Any] | None, scale: float, unit: str) -> str:
    if not c or c.get("interval") is None or None in c["interval"]:
        return "–"
    lo, hi = c["interval"]
    digits = 2 if unit == "pts" else 0
    return f"{c['verdict']} [{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}] {unit}"


def _tests_used(s: dict[str, Any]) -> str:
    """The tests the rule used, read from the seeds' comparisons: with verify.repeats the units
    are the repeats (paired t), with one unit the shared validation examples (McNemar)."""
    used = sorted(
        {
            f"{c['test']} (n = {c['n']})" if c.get("n") else str(c["test"])
            for seed in s["seeds"]
            for c in (seed.get("comparisons") or {}).values()
            if c.get("test")
        }
    )
    return "by " + "; ".join(used) if used else "no test recorded"


def markdown(s: dict[str, Any]) -> list[str]:
    st = s["settings"]
    lines = [
        "## The recipe on other seeds",
        "",
        f"Command: `{st['command']}` (the recipe was chosen at seed {st['chosen_on_seed']}; "
        f"{st['device']}, {st['threads']} thread(s); load average before "
        f"{', '.join(f'{x:.2f}' for x in st['load_average_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in st['load_average_after'])}). Each seed trains its own "
        "dense network; the protocol's cost is its recorded "
        f"{st['protocol_iterations'] or 0:,} iterations at "
        f"{1000 * (st['protocol_seconds_per_iteration'] or 0):.2f} ms each (measured once, "
        f"above). Verdicts on validation, 95% intervals, {_tests_used(s)}. The seed-0 result above "
        "was decided by the rule before issue 27 (one trial, zero tolerance, no interval); "
        "the verdicts below are the current rule's.",
        "",
    ]
    if not st["converged"]:
        lines += ["**Not converged (`--quick`): these verdicts do not speak for the recipe.**", ""]
    lines += [
        "| seed | verdict | accuracy vs dense | stop vs dense | beats random_reinit | "
        "ticket val / test % | dense val / test % | stop it (dense) | iterations | "
        "speedup (it) | speedup (s) |",
        "|---:|:---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["seeds"]:
        c = r["comparisons"]
        t, d = r["ticket"], r["dense"]
        lines.append(
            f"| {r['seed']} | {r['verdict']} | {_iv(c.get('matches_dense_accuracy'), 100, 'pts')} | "
            f"{_iv(c.get('stops_no_later'), 1, 'it')} | "
            f"{_iv(c.get('beats_random_reinit'), 100, 'pts')} | "
            f"{100 * t['val_accuracy']:.2f} / {100 * t['test_accuracy']:.2f} | "
            f"{100 * d['val_accuracy']:.2f} / {100 * d['test_accuracy']:.2f} | "
            f"{t['early_stop_iteration']} ({d['early_stop_iteration']}) | {r['iterations']:,} | "
            f"{r['iterations_factor']:.2f}x | {r['speedup']:.2f}x |"
        )
    lines += ["", "Why, per seed:", ""]
    lines += [f"- seed {r['seed']}: {r['reason']}" for r in s["seeds"]]
    return lines
