"""The paper's LeNet claims, each with its verdict and 95% interval, recomputed from the run
files of an experiment folder (bench/lenet_report.py's verdict part).

Every level's summary is rebuilt from its runs (`levels/NNN/runs/<id>.json`) with the engine's
torch-free code (lth_core.results.summaries, .paired, .verification), so the verdicts are the
current rule's whatever engine wrote the folder: with trials they pair across trials, with one
trial over the per-example validation predictions the runs keep.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lth_core.results import verdicts as v
from lth_core.results.paired import level_tables
from lth_core.results.summaries import level_summary
from lth_core.results.verification import decision
from lth_core.runs import TICKET, is_run_id

PAPER_CLAIMS = {
    "faster": "tickets reach minimum validation loss earlier than the dense network down to "
    "~21% of weights (38% earlier)",
    "keeps_accuracy": "tickets keep the dense network's accuracy down to ~3.6% of weights",
    "reinit_loses": "randomly reinitialized copies lose: at 21% the ticket is 0.5 points more "
    "accurate and stops 2.51x sooner",
    "random_prune_loses": "a random mask with the same per-layer sparsity loses to the ticket "
    "(Frankle et al. 2021's control)",
}


def _runs(level_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((level_dir / "runs").glob("*.json")):
        if is_run_id(path.stem):
            out[path.stem] = json.loads(path.read_text())
    return out


def summaries(folder: Path) -> list[dict[str, Any]]:
    """Each finished level's summary, rebuilt from its run files with today's code."""
    out: list[dict[str, Any]] = []
    dense: dict[str, dict[str, Any]] | None = None
    for level_dir in sorted((folder / "levels").glob("[0-9][0-9][0-9]")):
        if not (level_dir / "summary.json").is_file():
            continue
        level = int(level_dir.name)
        runs = _runs(level_dir)
        summary = level_summary(level, runs, {})
        if level == 0:
            dense = {n: r for n, r in runs.items() if n.split(".")[0] == TICKET}
        summary["paired"] = level_tables(runs, None if level == 0 else dense)
        out.append(summary)
    return out


def _closest(summaries_: list[dict[str, Any]], fraction: float) -> dict[str, Any]:
    import math

    pruned = [s for s in summaries_ if s["level"] > 0]
    return min(pruned, key=lambda s: abs(math.log(s["weights_remaining"]) - math.log(fraction)))


def _iv(c: Mapping[str, Any], scale: float = 100.0, unit: str = "points") -> str:
    lo, hi = c.get("interval") or [None, None]
    if lo is None or hi is None:
        return "no interval"
    digits = 2 if unit == "points" else 0
    return f"[{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}] {unit}"


def _faster(c: Mapping[str, Any]) -> str:
    """'Learns faster' is stopping strictly earlier: yes when the interval of (level - dense)
    iterations lies below 0 and the level's stop is a true minimum."""
    _lo, hi = c.get("interval") or [None, None]
    if c["verdict"] == v.YES and hi is not None and hi < 0:
        return v.YES
    if c["verdict"] == v.NO:
        return v.NO
    return v.INCONCLUSIVE


def claims(folder: Path) -> dict[str, Any]:
    """The decision over the folder and each claim's verdict, interval and test."""
    spec = json.loads((folder / "spec.json").read_text())
    levels = summaries(folder)
    found = decision(spec, levels)
    records = {r["level"]: r for r in found["levels"]}
    out: dict[str, Any] = {"decision": found, "claims": {}}
    if len(levels) < 2:
        return out
    at21, at36 = _closest(levels, 0.211), _closest(levels, 0.036)
    faster = []
    for s in levels[1:]:
        if s["weights_remaining"] >= 0.2:
            c = records[s["level"]]["comparisons"]["stops_no_later"]
            faster.append(
                {
                    "level": s["level"],
                    "weights_remaining": s["weights_remaining"],
                    "verdict": _faster(c),
                    "effect": c["effect"],
                    "interval": c["interval"],
                    "test": c["test"],
                    "why": c["why"],
                }
            )
    out["claims"]["faster"] = {"paper": PAPER_CLAIMS["faster"], "levels": faster}
    keep = records[at36["level"]]["comparisons"]["matches_dense_accuracy"]
    out["claims"]["keeps_accuracy"] = {
        "paper": PAPER_CLAIMS["keeps_accuracy"],
        "level": at36["level"],
        "weights_remaining": at36["weights_remaining"],
        **keep,
    }
    for kind, claim in (("random_reinit", "reinit_loses"), ("random_prune", "random_prune_loses")):
        c = records[at21["level"]]["comparisons"].get(f"beats_{kind}")
        if c is not None:
            out["claims"][claim] = {
                "paper": PAPER_CLAIMS[claim],
                "level": at21["level"],
                "weights_remaining": at21["weights_remaining"],
                **c,
            }
    return out


def markdown(found: Mapping[str, Any]) -> list[str]:
    """The claims and the per-level verdicts as markdown lines."""
    d = found["decision"]
    lines = [
        "## The paper's claims, each with its verdict (95% intervals, validation data)",
        "",
        f"Decision by the engine's rule, recomputed from the run files: {d['reason']}.",
        "",
        "| claim (paper) | where | verdict | effect | interval | test |",
        "|---|---|:---:|---:|---|---|",
    ]
    cl = found["claims"]
    for row in cl.get("faster", {}).get("levels", []):
        lines.append(
            f"| learns faster (38% earlier to 21%) | level {row['level']}, "
            f"{100 * row['weights_remaining']:.1f}% | {row['verdict']} | "
            f"{row['effect']:+.0f} it | {_iv(row, 1.0, 'iterations')} | {row['test']} |"
        )
    for key, label in (
        ("keeps_accuracy", "keeps accuracy (to 3.6%)"),
        ("reinit_loses", "beats random_reinit (at 21%)"),
        ("random_prune_loses", "beats random_prune (at 21%)"),
    ):
        c = cl.get(key)
        if c:
            lines.append(
                f"| {label} | level {c['level']}, {100 * c['weights_remaining']:.1f}% | "
                f"{c['verdict']} | {100 * c['effect']:+.2f} pts | {_iv(c)} | {c['test']} |"
            )
    lines += [
        "",
        "| level | verdict | accuracy - dense | stop - dense | why |",
        "|---:|:---:|---|---|---|",
    ]
    for r in d["levels"][1:]:
        acc = r["comparisons"]["matches_dense_accuracy"]
        stop = r["comparisons"].get("stops_no_later", {})
        lines.append(
            f"| {r['level']} | {r['verdict']} | {_iv(acc)} | "
            f"{_iv(stop, 1.0, 'it') if stop else '–'} | {'; '.join(r['reasons'])} |"
        )
    return [*lines, ""]
