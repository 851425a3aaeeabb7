"""Verdicts with their uncertainty (lth_core.results.verdicts) and the ticket rule built on them
(lth_core.results.ticket_rule), on crafted summaries and predictions."""

from __future__ import annotations

from typing import Any

import numpy as np

from lth_core.results import verdicts as v
from lth_core.results.paired import pack_correct, paired_table, unpack_correct
from lth_core.results.ticket_rule import choose_ticket, ticket_decision
from lth_core.results.verification import decision, verified


def _run(trial: int, acc: float, it: int, *, bound: bool = False) -> dict[str, Any]:
    return {
        "trial": trial,
        "repeat": 0,
        "early_stop_val_accuracy": acc,
        "early_stop_iteration": it,
        "early_stop_lower_bound": bound,
    }


def _level(level: int, tickets: list[dict[str, Any]], **controls: list[dict[str, Any]]):
    return {
        "level": level,
        "weights_remaining": 0.8**level,
        "runs": {"ticket": tickets, **controls},
    }


def _table(level_right: np.ndarray, dense_right: np.ndarray) -> list[list[int]]:
    return paired_table(level_right, [dense_right])


def test_packed_correctness_round_trips() -> None:
    rng = np.random.default_rng(1)
    bools = rng.random(5000) < 0.9
    packed = pack_correct(bools, 3800)
    assert packed["examples"] == 5000 and packed["iteration"] == 3800
    assert len(packed["bits"]) < 900  # 625 bytes in base64
    assert np.array_equal(unpack_correct(packed), bools)


def test_a_two_example_shortfall_is_not_a_failure() -> None:
    """Seed 1 of the time-to-ticket run: 90.06% against 90.10% on 5,000 examples."""
    rng = np.random.default_rng(0)
    dense = rng.random(5000) < 0.901
    level = dense.copy()
    flip = rng.choice(np.flatnonzero(dense), 40, replace=False)
    level[flip] = False  # 40 right only for dense ...
    gain = rng.choice(np.flatnonzero(~dense), 38, replace=False)
    level[gain] = True  # ... 38 right only for the level: 2 examples short
    found = v.accuracy_examples(_table(level, dense), margin=0.0, against="the dense network")
    assert found["verdict"] == v.INCONCLUSIVE
    assert found["effect"] == -2 / 5000
    lo, hi = found["interval"]
    assert lo < -2 / 5000 < hi and hi > 0
    assert found["test"].startswith("McNemar") and found["n"] == 5000
    # With a margin of half a point it is a match; far below the margin it is a decided no.
    assert v.accuracy_examples(_table(level, dense), margin=0.005, against="d")["verdict"] == "yes"
    worse = dense.copy()
    worse[rng.choice(np.flatnonzero(dense), 200, replace=False)] = False
    assert v.accuracy_examples(_table(worse, dense), margin=0.0, against="d")["verdict"] == "no"


def test_identical_predictions_match() -> None:
    same = np.ones(100, dtype=bool)
    found = v.accuracy_examples(_table(same, same), margin=0.0, against="d")
    assert found["verdict"] == v.YES and found["interval"] == [0.0, 0.0]


def test_a_tie_with_a_control_is_not_a_loss() -> None:
    same = np.random.default_rng(2).random(1000) < 0.8
    found = v.accuracy_examples(_table(same, same), margin=None, against="random_reinit")
    assert found["verdict"] == v.INCONCLUSIVE and "tie" in found["why"]
    units = v.accuracy_units({0: 0.9, 1: 0.91}, {0: 0.9, 1: 0.91}, margin=None, against="r")
    assert units["verdict"] == v.INCONCLUSIVE and units["effect"] == 0.0


def test_several_draws_of_a_control_use_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(3)
    ticket = rng.random(2000) < 0.9
    draws = [rng.random(2000) < 0.7, rng.random(2000) < 0.7]
    found = v.accuracy_examples(paired_table(ticket, draws), margin=None, against="random_reinit")
    assert found["verdict"] == v.YES and "bootstrap" in found["test"]
    assert found["interval"][0] > 0.1


def test_units_give_a_paired_t_interval() -> None:
    """The issue's case: per trial +0.18, +0.42, -0.34 points is no evidence of beating."""
    mine = {0: 0.9018, 1: 0.9042, 2: 0.8966}
    theirs = {0: 0.9, 1: 0.9, 2: 0.9}
    found = v.accuracy_units(mine, theirs, margin=None, against="random_reinit")
    assert found["verdict"] == v.INCONCLUSIVE and found["n"] == 3
    assert found["test"] == "paired t interval over units"


def test_a_lower_bound_dense_stop_makes_iterations_inconclusive() -> None:
    dense = {0: (2000.0, True), 1: (2000.0, True), 2: (2000.0, True)}
    later = {0: (2000.0, True), 1: (2000.0, True), 2: (2000.0, True)}
    found = v.iterations_at_most(later, dense)
    assert found["verdict"] == v.INCONCLUSIVE and "train longer" in found["why"]
    # A level that stopped (a true minimum) before the dense network's lower bound: yes.
    early = {0: (900.0, False), 1: (1000.0, False), 2: (1100.0, False)}
    assert v.iterations_at_most(early, dense)["verdict"] == v.YES
    # A level that only has a lower bound past a dense network's true minimum: no.
    late = {0: (3000.0, True), 1: (3100.0, True), 2: (2900.0, True)}
    true_dense = {0: (1000.0, False), 1: (1100.0, False), 2: (1000.0, False)}
    assert v.iterations_at_most(late, true_dense)["verdict"] == v.NO


def test_the_paper_condition_has_no_std_slack() -> None:
    dense = {0: (1000.0, False), 1: (1100.0, False), 2: (1200.0, False)}
    mine = {0: (1500.0, False), 1: (1550.0, False), 2: (1600.0, False)}
    assert v.iterations_at_most(mine, dense)["verdict"] == v.NO


def _dense() -> dict[str, Any]:
    return _level(0, [_run(t, 0.90, 2000) for t in range(3)])


def test_an_inconclusive_level_does_not_break_the_run() -> None:
    dense = _dense()
    good = _level(1, [_run(0, 0.905, 1500), _run(1, 0.907, 1400), _run(2, 0.906, 1600)])
    noisy = _level(2, [_run(0, 0.91, 1500), _run(1, 0.89, 1400), _run(2, 0.905, 1500)])
    sparse = _level(3, [_run(0, 0.904, 1500), _run(1, 0.906, 1500), _run(2, 0.905, 1400)])
    found = ticket_decision([dense, good, noisy, sparse], tolerance=0.0)
    verdicts = {r["level"]: r["verdict"] for r in found["levels"]}
    assert verdicts[2] == v.INCONCLUSIVE and verdicts[3] == v.YES
    assert found["level"] == 3 and found["verdict"] == v.YES


def test_a_decided_failure_breaks_the_run() -> None:
    dense = _dense()
    good = _level(1, [_run(0, 0.905, 1500), _run(1, 0.907, 1400), _run(2, 0.906, 1600)])
    bad = _level(2, [_run(0, 0.80, 1500), _run(1, 0.81, 1400), _run(2, 0.805, 1500)])
    lucky = _level(3, [_run(0, 0.904, 1500), _run(1, 0.906, 1500), _run(2, 0.905, 1400)])
    found = ticket_decision([dense, good, bad, lucky], tolerance=0.0)
    assert found["level"] == 1
    assert [r["in_unbroken_run"] for r in found["levels"]] == [False, True, False, False]


def test_no_qualifying_level_gives_no_ticket_never_the_dense_network() -> None:
    dense = _dense()
    bad = _level(1, [_run(0, 0.80, 1500), _run(1, 0.81, 1400), _run(2, 0.805, 1500)])
    found = ticket_decision([dense, bad], tolerance=0.0)
    assert found["level"] is None and found["verdict"] is None
    assert found["reason"].startswith("no winning ticket: level 1 below the dense network")
    assert choose_ticket([dense], 0.0) is None
    assert choose_ticket([bad], 0.0) is None


def test_beating_controls_is_required_and_a_loss_fails() -> None:
    dense = _dense()
    ticket = [_run(0, 0.905, 1500), _run(1, 0.907, 1400), _run(2, 0.906, 1600)]
    reinit = [_run(0, 0.95, 1500), _run(1, 0.951, 1400), _run(2, 0.952, 1600)]
    found = ticket_decision([dense, _level(1, ticket, random_reinit=reinit)], tolerance=0.0)
    assert found["level"] is None
    record = found["levels"][1]
    assert record["comparisons"]["beats_random_reinit"]["verdict"] == v.NO


def test_verification_is_the_decision_with_its_interval() -> None:
    spec = {"pruning": {"levels": 2}, "verify": True}
    dense = _dense()
    cheap = _level(1, [_run(0, 0.80, 9000)])
    final = _level(2, [_run(0, 0.905, 1500), _run(1, 0.906, 1400), _run(2, 0.905, 1500)])
    found = decision(spec, [dense, cheap, final])
    assert found["decided_by"] == "verification" and found["level"] == 2
    assert found["verification"]["comparisons"]["matches_dense_accuracy"]["interval"][0] > 0
    assert verified(spec, [dense, cheap, final]) is True
    assert decision(spec, [dense, cheap])["level"] is None
    assert verified(spec, [dense, cheap]) is None
    # A verification that fails: no ticket, its record says why, verified is False.
    failed = _level(2, [_run(0, 0.80, 1500), _run(1, 0.81, 1400), _run(2, 0.805, 1500)])
    found = decision(spec, [dense, cheap, failed])
    assert found["level"] is None and found["verdict"] is None
    assert found["verification"]["verdict"] == v.NO and "no winning ticket" in found["reason"]
    assert verified(spec, [dense, cheap, failed]) is False


def test_finetune_levels_are_named_pruned_networks() -> None:
    """With finetune (or lr_rewind) a level is a pruned network, not a winning ticket, and
    random_reinit (retrained on the fine-tuning schedule) is reported, not offered as proof."""
    ticket = [_run(0, 0.905, 1500), _run(1, 0.907, 1400), _run(2, 0.906, 1600)]
    reinit = [_run(0, 0.95, 1500), _run(1, 0.951, 1400), _run(2, 0.952, 1600)]
    levels = [_dense(), _level(1, ticket, random_reinit=reinit)]
    for mode in ("finetune", "lr_rewind"):
        spec = {"pruning": {"levels": 1}, "reset": {"mode": mode}}
        found = decision(spec, levels)
        assert found["names"] == "pruned network" and "not winning tickets" in found["note"]
        beats = found["levels"][1]["comparisons"]["beats_random_reinit"]
        assert beats["verdict"] == v.NO and beats["required"] is False
        assert "not proof here" in beats["why"] and found["level"] == 1
    # With the paper's reset the same loss to random_reinit is a decided failure.
    assert decision({"pruning": {"levels": 1}}, levels)["level"] is None


def test_the_cli_table_says_no_winning_ticket_and_never_stars_the_dense_network() -> None:
    from rich.console import Console

    from cli.render import level_table

    dense = {**_dense(), "early_stop_iteration": 2000, "early_stop_test_accuracy": 0.9}
    bad = _level(1, [_run(0, 0.80, 1500), _run(1, 0.81, 1400), _run(2, 0.805, 1500)])
    bad.update(early_stop_iteration=1500, early_stop_test_accuracy=0.8)
    for summary in (dense, bad):
        summary.update(final_test_accuracy=0.9, early_stop_val_accuracy=0.9)
    found = ticket_decision([dense, bad], tolerance=0.0)
    console = Console(width=200, record=True)
    console.print(level_table([dense, bad], found["level"], decision=found))
    out = console.export_text()
    assert "no winning ticket" in out and "level 1 below the dense network" in out
    assert " * " not in out and "0 *" not in out
    rows = [line.strip("│ ").split() for line in out.splitlines() if line.startswith("│")]
    assert [(row[0], row[-1]) for row in rows] == [("0", "dense"), ("1", "no")]


def test_levels_csv_carries_every_run_kind_s_validation_accuracy() -> None:
    from lth_core.report.sources import levels_csv
    from lth_core.results.summaries import level_summary

    def run(acc: float) -> dict[str, Any]:
        point = {"iteration": 100, "val_accuracy": acc, "test_accuracy": acc}
        return {
            "weights_remaining": 0.8,
            "early_stop_iteration": 100,
            "early_stop_val_loss": 0.3,
            "early_stop_val_accuracy": acc,
            "early_stop_test_accuracy": acc,
            "final_test_accuracy": acc,
            "curve": [point],
        }

    summary = level_summary(1, {"ticket": run(0.9), "random_reinit": run(0.85)}, {})
    rows = levels_csv([summary], 1).splitlines()
    header = rows[0].split(",")
    column = header.index("early_stop_val_accuracy")
    assert [r.split(",")[column] for r in rows[1:]] == ["0.9", "0.85"]
