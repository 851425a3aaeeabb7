"""An ETA that settles (issue 25), on a recorded progress trace.

tests/data/progress_trace.json is a real experiment's progress (bench/progress_trace.py: LeNet
on synthetic data, level 0 the ticket alone, levels 1-3 the ticket with random_reinit stacked),
recorded on the shared 2-core machine while other work ran: its speed changed several-fold
from level to level. Replayed with its own clock through the worker's estimator, the ETA must
never move by more than a factor of two from what the previous estimate predicted, except
when a new kind of run starts, and must end near the time that was actually left. The
per-run speed it replaces jumped by more than that on the same events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lth_core.results.eta import SettlingEta, Speed, estimate

TRACE = json.loads((Path(__file__).parent / "data" / "progress_trace.json").read_text())
END = TRACE["finished_at"]


def _replay(settling: bool) -> list[tuple[float, str, float | None, float]]:
    """(time, kind, ETA, time actually left) at every event of the trace."""
    now = [0.0]
    settle, speed = SettlingEta(lambda: now[0]), Speed(lambda: now[0])
    out = []
    for event in TRACE["events"]:
        now[0] = event["t"]
        kind = "+".join(event["kinds"])
        run: Any = (event["level"], kind)
        left = (event["left"][0], event["left"][1])
        if settling:
            settle.observe(run, kind, event["iteration"])
            eta = settle.estimate(left).eta_seconds
        else:
            eta = estimate(left, speed.observe(run, event["iteration"])).eta_seconds
        out.append((event["t"], kind, eta, END - event["t"]))
    return out


def _worst_move(rows: list[tuple[float, str, float | None, float]]) -> float:
    """The largest factor between an ETA and what the one before predicted (it minus the time
    since), over consecutive estimates of one kind of run."""
    worst, prev = 1.0, None
    for row in rows:
        if row[2] is None:
            continue
        if prev is not None and prev[1] == row[1]:
            expected = prev[2] - (row[0] - prev[0])
            if expected > 0:
                worst = max(worst, row[2] / expected, expected / max(row[2], 1e-9))
        prev = row
    return worst


def test_the_trace_is_a_real_one() -> None:
    events = TRACE["events"]
    assert len(events) > 100 and END > 60
    assert {"+".join(e["kinds"]) for e in events} == {"ticket", "ticket+random_reinit"}
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert events[-1]["left"] == [0, 0]


def test_the_eta_never_jumps_without_a_reason() -> None:
    rows = _replay(settling=True)
    assert _worst_move(rows) <= 2.0 + 1e-9
    # The per-run speed, on the same events, jumped by far more.
    assert _worst_move(_replay(settling=False)) > 4


def test_the_eta_converges_to_the_time_actually_left() -> None:
    rows = [r for r in _replay(settling=True) if r[2] is not None]
    assert len(rows) >= len(TRACE["events"]) - 2  # an estimate from the second event on
    last_tenth = [abs(eta - actual) / END for t, _, eta, actual in rows if t >= 0.9 * END]
    assert last_tenth and max(last_tenth) < 0.1
    _, _, eta, actual = rows[-1]
    assert eta == pytest.approx(actual, abs=0.02 * END)


def test_a_new_kind_of_run_moves_it_at_once() -> None:
    now = [0.0]
    eta = SettlingEta(lambda: now[0], tau=10.0)
    for i in range(10):  # the ticket alone at 100 it/s
        now[0] = i
        eta.observe((0, "ticket"), "ticket", 100 * i)
        first = eta.estimate((1000 - 100 * i, 0)).eta_seconds
    assert first == pytest.approx(1.0, rel=0.05) and eta.rate() == pytest.approx(100, rel=0.01)
    for i in range(4):  # a stacked level at 10 it/s: a new kind, taken at once
        now[0] = 9 + i
        eta.observe((1, "ticket+random_reinit"), "ticket+random_reinit", 10 * i)
    moved = eta.estimate((1000, 0)).eta_seconds
    assert moved == pytest.approx(100, rel=0.05)
