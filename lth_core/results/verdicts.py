"""Every comparison a ticket verdict rests on, with its uncertainty (torch-free, shared with the API).

A comparison is {"verdict": "yes" | "no" | "inconclusive", "effect", "interval": [lo, hi],
"confidence": 0.95, "test", "n", "why"}: `effect` is A minus B (accuracy as a fraction,
iterations in iterations), `interval` its 95% interval (None for an unbounded side), `n` the
paired units (trials or repeats) or, with one unit, the shared validation examples.

Which test, and why:
- **Two or more units** (trials, or verification repeats): a paired t interval over the units'
  differences. Unit r of a level pairs with unit r of the dense level 0 and with the controls
  of unit r (they share its data order). With 2-5 units a bootstrap over units has only a
  handful of distinct resamples and undercovers; the t interval is honest about few units.
- **One unit, accuracy**: the two networks were evaluated on the same validation examples, so
  the comparison is paired over examples. Against one run: McNemar's exact test (a binomial on
  the discordant examples) with its conditional Clopper-Pearson interval on the difference.
  Against several draws of a control: a paired bootstrap over the examples. Without per-example
  predictions (runs from before they were kept, or the "final" metric): an unpaired normal
  interval on the two accuracies, which is wider than the paired one (conservative).
- **Iterations**: the paper's condition, early stop at most the dense network's (no slack).
  With one unit there is no spread: a stop no later is "yes" (the paper's condition as stated),
  a later one "inconclusive", not "no" (one run's early stop moves by thousands of iterations
  between data orders; a failure needs two or more units to be decided). An early stop at a run's last evaluation is only a lower bound (the validation loss was
  still falling): a verdict the bounds could overturn becomes "inconclusive (train longer)".

The decisions: "matches" is non-inferiority, yes when the interval of (level - dense) lies at
or above -margin, no only when it lies wholly below it (a 2-of-5,000-example shortfall is never
"no"). "Beats" is superiority, yes when the interval lies above 0, no when below, a tie "not
distinguishable" (inconclusive), not a loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4000
YES, NO, INCONCLUSIVE = "yes", "no", "inconclusive"

# ---------------------------------------------------------------- intervals


def _t_interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    n = len(diffs)
    mean = math.fsum(diffs) / n
    sd = float(np.std(diffs, ddof=1))
    from scipy import stats as sps  # ~0.4 s to import: only where an interval is computed

    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _mcnemar(table: Sequence[Sequence[int]]) -> tuple[float, float, float, int]:
    """(effect, lo, hi, n) of accuracy A - B from a 2x2 table: McNemar's exact test's
    conditional interval (Clopper-Pearson on the share of discordant examples A got right)."""
    b, c = int(table[1][0]), int(table[0][1])
    n = sum(sum(row) for row in table)
    m = b + c
    if m == 0:
        return 0.0, 0.0, 0.0, n
    from scipy import stats as sps

    ci = sps.binomtest(b, m).proportion_ci(CONFIDENCE, method="exact")
    scale = m / n
    return (b - c) / n, (2 * ci.low - 1) * scale, (2 * ci.high - 1) * scale, n


def _bootstrap(table: Sequence[Sequence[int]]) -> tuple[float, float, float, int]:
    """(effect, lo, hi, n) of A minus the mean of k draws, resampling examples (seeded: the
    same table gives the same interval everywhere)."""
    k = len(table[0]) - 1
    counts = np.array([c for row in table for c in row], dtype=float)
    values = np.array([x - j / k for x in (0, 1) for j in range(k + 1)])
    n = int(counts.sum())
    rng = np.random.default_rng(0)
    draws = rng.multinomial(n, counts / n, size=BOOTSTRAP_RESAMPLES) @ values / n
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(counts @ values / n), float(lo), float(hi), n


def _unpaired(a: float, b: float, n: int) -> tuple[float, float, float]:
    se = math.sqrt(max(a * (1 - a), 0.0) / n + max(b * (1 - b), 0.0) / n)
    from scipy import stats as sps

    z = float(sps.norm.ppf(0.5 + CONFIDENCE / 2))
    return a - b, a - b - z * se, a - b + z * se


# ---------------------------------------------------------------- decisions


def _result(
    verdict: str, effect: float | None, lo: float | None, hi: float | None, test: str, n: int, why
) -> dict[str, Any]:
    return {
        "verdict": verdict,
        "effect": effect,
        "interval": [lo, hi],
        "confidence": CONFIDENCE,
        "test": test,
        "n": n,
        "why": why,
    }


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _interval_text(lo: float, hi: float) -> str:
    return f"[{_pts(lo)}, {_pts(hi)}] points"


def decide_accuracy(
    effect: float, lo: float, hi: float, *, margin: float | None, against: str
) -> tuple[str, str]:
    """(verdict, why) for an accuracy difference: non-inferiority at `margin` (matching the
    dense network) or, with margin None, superiority (beating a control)."""
    span = _interval_text(lo, hi)
    if margin is not None:
        if lo >= -margin - 1e-12:
            return YES, f"matches {against}: {span} is at or above -{100 * margin:.2f}"
        if hi < -margin:
            return NO, f"below {against}: {span} lies wholly under -{100 * margin:.2f}"
        return INCONCLUSIVE, (
            f"not distinguishable from {against} at margin {100 * margin:.2f}: {span} "
            "straddles it (more units, or a ticket_tolerance, would decide)"
        )
    if lo > 0:
        return YES, f"beats {against}: {span} lies above 0"
    if hi < 0:
        return NO, f"loses to {against}: {span} lies below 0"
    return INCONCLUSIVE, f"not distinguishable from {against}: {span} contains 0 (a tie)"


def accuracy_units(
    mine: Mapping[int, float], theirs: Mapping[int, float], *, margin: float | None, against: str
) -> dict[str, Any]:
    """Accuracy A - B paired over units (two or more shared units: paired t interval)."""
    shared = sorted(set(mine) & set(theirs))
    diffs = [mine[u] - theirs[u] for u in shared]
    effect, lo, hi = _t_interval(diffs)
    verdict, why = decide_accuracy(effect, lo, hi, margin=margin, against=against)
    return _result(verdict, effect, lo, hi, "paired t interval over units", len(shared), why)


def accuracy_examples(
    table: Sequence[Sequence[int]], *, margin: float | None, against: str
) -> dict[str, Any]:
    """Accuracy A - B paired over the shared validation examples of one unit."""
    if len(table[0]) == 2:
        effect, lo, hi, n = _mcnemar(table)
        test = "McNemar's exact test over validation examples (Clopper-Pearson, conditional)"
    else:
        effect, lo, hi, n = _bootstrap(table)
        test = f"paired bootstrap over validation examples ({BOOTSTRAP_RESAMPLES} resamples)"
    verdict, why = decide_accuracy(effect, lo, hi, margin=margin, against=against)
    return _result(verdict, effect, lo, hi, test, n, why)


def accuracy_unpaired(
    a: float, b: float, n: int | None, *, margin: float | None, against: str
) -> dict[str, Any]:
    """One unit without per-example predictions: an unpaired (conservative) normal interval."""
    if not n:
        why = "no per-example predictions and no example count: not decidable"
        return _result(INCONCLUSIVE, a - b, None, None, "none", 0, why)
    effect, lo, hi = _unpaired(a, b, n)
    verdict, why = decide_accuracy(effect, lo, hi, margin=margin, against=against)
    test = "unpaired normal interval on two accuracies (no per-example predictions)"
    return _result(verdict, effect, lo, hi, test, n, why)


def iterations_at_most(
    mine: Mapping[int, tuple[float, bool]], dense: Mapping[int, tuple[float, bool]]
) -> dict[str, Any]:
    """The paper's iteration condition, early stop at most the dense network's, paired over
    units; each value is (early-stop iteration, whether it is only a lower bound)."""
    shared = sorted(set(mine) & set(dense))
    if not shared:
        return _result(INCONCLUSIVE, None, None, None, "none", 0, "no early-stop iterations")
    diffs = [mine[u][0] - dense[u][0] for u in shared]
    if len(shared) == 1:
        effect = lo = hi = diffs[0]
        test = "one unit: the two early-stop iterations compared as the paper states (no spread)"
    else:
        effect, lo, hi = _t_interval(diffs)
        test = "paired t interval over units"
    mine_bound = any(mine[u][1] for u in shared)
    dense_bound = any(dense[u][1] for u in shared)
    span = f"[{lo:+.0f}, {hi:+.0f}] iterations"
    if hi <= 0 and not mine_bound:
        verdict, why = YES, f"stops no later than dense: {span}"
    elif len(shared) == 1 and lo > 0 and not dense_bound:
        verdict = INCONCLUSIVE
        why = (
            f"one unit stops later than dense by {lo:+.0f} iterations: one run's early stop "
            "varies from run to run by more than that can tell (more trials decide)"
        )
    elif lo > 0 and not dense_bound:
        verdict, why = NO, f"stops later than dense: {span}"
    elif mine_bound or dense_bound:
        who = "this level" if mine_bound else "the dense network"
        verdict = INCONCLUSIVE
        why = f"train longer: {who} stopped at its last evaluation, a lower bound; {span}"
    else:
        verdict, why = INCONCLUSIVE, f"not distinguishable from dense: {span} contains 0"
    return _result(verdict, effect, lo, hi, test, len(shared), why)


def overall(comparisons: Mapping[str, Mapping[str, Any]]) -> str:
    """A level's verdict from its required comparisons: no if any is no, yes if all are yes."""
    verdicts = [c["verdict"] for c in comparisons.values()]
    if NO in verdicts:
        return NO
    return YES if verdicts and all(v == YES for v in verdicts) else INCONCLUSIVE
