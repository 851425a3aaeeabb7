"""Issue 11: the winning ticket as the paper defines it, trials, true baselines, diagnostics.

Crafted summaries for the ticket rule (no training); tiny synthetic runs for the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_helpers import tiny_spec as _tiny_spec

from lth_core import pruning
from lth_core.diagnostics.instability import error_barrier
from lth_core.experiment import Experiment
from lth_core.results.summaries import level_summary, stats
from lth_core.results.ticket_rule import choose_ticket, ticket_decision
from lth_core.runs import parse_run_id, run_id
from lth_core.spec import TrainingSpec, parse_spec
from lth_core.train.optim import finetune_schedule, lr_factor

# Smaller than engine_helpers' TINY: 8x8 inputs, a few hundred examples (each run < 1 s).
SMALL: dict[str, Any] = {
    "dataset": {
        "validation_size": 60,
        "synthetic": {"input_shape": [1, 8, 8], "train_size": 360, "test_size": 60},
    },
    "training": {"batch_size": 20},
}


def tiny_spec(**sections: Any):
    from lth_core.spec import _merge

    return _tiny_spec(**_merge(SMALL, sections))


# ----------------------------------------------------------------- the ticket rule


def _level(level: int, val: float, it: int, *, test: float | None = None, **controls: Any):
    """A crafted level summary: one trial, 5,000 validation examples (no per-example
    predictions: the verdicts use the unpaired, conservative interval), controls given as
    name=(val accuracy, iteration)."""
    return {
        "level": level,
        "weights_remaining": 0.8**level,
        "early_stop_iteration": it,
        "early_stop_val_accuracy": val,
        "early_stop_test_accuracy": val if test is None else test,
        "val_examples": 5000,
        "controls": {
            name: {"early_stop_val_accuracy": v, "early_stop_iteration": i, "val_examples": 5000}
            for name, (v, i) in controls.items()
        },
    }


def test_test_set_luck_is_not_a_ticket() -> None:
    """Level 2 has the best test accuracy but worse validation accuracy: not chosen on it."""
    summaries = [_level(0, 0.90, 500), _level(1, 0.91, 400), _level(2, 0.85, 300, test=0.99)]
    decision = ticket_decision(summaries, tolerance=0.0)
    assert decision["level"] == 1
    assert not decision["levels"][2]["qualifies"]
    assert decision["levels"][2]["reasons"][0].startswith("no: below the dense network")


def test_one_slow_run_is_not_a_decided_failure() -> None:
    """Same accuracy as dense, reached later, in one trial: one run's early stop is too noisy
    to decide "no" (inconclusive, the run goes on); with trials the paper's condition decides."""
    summaries = [_level(0, 0.90, 500), _level(1, 0.92, 700)]
    decision = ticket_decision(summaries, tolerance=0.0)
    assert decision["level"] == 1 and decision["verdict"] == "inconclusive"
    stops = decision["levels"][1]["comparisons"]["stops_no_later"]
    assert stops["verdict"] == "inconclusive" and "one unit" in stops["why"]

    def trials(level: int, its: list[int]) -> dict[str, Any]:
        runs = [
            {"trial": t, "early_stop_val_accuracy": 0.9, "early_stop_iteration": i}
            for t, i in enumerate(its)
        ]
        return {"level": level, "controls": {}, "runs": {"ticket": runs}}

    decision = ticket_decision([trials(0, [500, 520, 510]), trials(1, [700, 690, 720])], 0.0)
    assert decision["level"] is None
    assert decision["levels"][1]["comparisons"]["stops_no_later"]["verdict"] == "no"


def test_a_level_that_loses_to_its_control_is_no_ticket() -> None:
    summaries = [
        _level(0, 0.90, 500),
        _level(1, 0.91, 400, random_reinit=(0.89, 600)),
        _level(2, 0.91, 400, random_reinit=(0.93, 450), sign_preserving_reinit=(0.95, 300)),
    ]
    decision = ticket_decision(summaries, tolerance=0.0)
    assert decision["level"] == 1
    one, two = decision["levels"][1], decision["levels"][2]
    assert one["margins"]["random_reinit"]["val_accuracy"] == pytest.approx(0.02)
    assert one["margins"]["random_reinit"]["early_stop_iteration"] == 200
    assert one["comparisons"]["beats_random_reinit"]["verdict"] == "yes"
    assert not two["qualifies"]
    assert any(r.startswith("no: loses to random_reinit") for r in two["reasons"])
    # sign_preserving_reinit is reported, not a bar (Zhou et al.: it nearly matches tickets).
    assert two["margins"]["sign_preserving_reinit"]["must_beat"] is False
    assert two["comparisons"]["beats_sign_preserving_reinit"]["required"] is False


def test_a_lucky_level_after_a_failed_one_is_not_the_ticket() -> None:
    summaries = [
        _level(0, 0.90, 500),
        _level(1, 0.91, 400),
        _level(2, 0.80, 400),  # fails
        _level(3, 0.92, 300),  # matches by luck, sparser
    ]
    decision = ticket_decision(summaries, tolerance=0.0)
    assert decision["level"] == 1 == choose_ticket(summaries, 0.0)
    three = decision["levels"][3]
    assert three["qualifies"] and not three["in_unbroken_run"]
    assert "after a level with one" in three["reasons"][-1]
    assert "unbroken run" in decision["rule"]
    assert choose_ticket(summaries[1:], 0.0) is None  # no dense level yet


def test_with_trials_the_comparison_is_paired_across_trials() -> None:
    def trials(level: int, vals: list[float], its: list[int]) -> dict[str, Any]:
        runs = [
            {"trial": t, "early_stop_val_accuracy": v, "early_stop_iteration": i}
            for t, (v, i) in enumerate(zip(vals, its, strict=True))
        ]
        return {"level": level, "controls": {}, "runs": {"ticket": runs}}

    dense = trials(0, [0.90, 0.92, 0.94], [500, 500, 500])
    within = trials(1, [0.90, 0.91, 0.91], [400, 420, 410])  # -0.013 +- 0.038: undecided
    below = trials(2, [0.88, 0.89, 0.90], [400, 400, 400])  # -0.03 +- 0.025: decided below
    decision = ticket_decision([dense, within, below], tolerance=0.0)
    accuracy = decision["levels"][1]["comparisons"]["matches_dense_accuracy"]
    assert accuracy["verdict"] == "inconclusive" and accuracy["n"] == 3
    assert accuracy["test"] == "paired t interval over units"
    assert decision["levels"][1]["qualifies"]
    assert decision["levels"][2]["verdict"] == "no"
    assert decision["level"] == 1


def test_final_metric_uses_the_last_report_iteration() -> None:
    def run(acc_early: float, acc_end: float) -> dict[str, Any]:
        return {
            "early_stop_val_accuracy": acc_early,
            "early_stop_iteration": 9999,
            "val_examples": 5000,
            "report": {"10": {"val_accuracy": acc_early}, "30": {"val_accuracy": acc_end}},
        }

    levels = [
        {"level": 0, "runs": {"ticket": [run(0.7, 0.90)]}},
        {"level": 1, "runs": {"ticket": [run(0.1, 0.91)]}},
    ]
    assert ticket_decision(levels, 0.0, "final")["level"] == 1
    # At early stop level 1 is far worse (0.1 vs 0.7): no winning ticket (never the dense one).
    assert ticket_decision(levels, 0.0, "early_stop")["level"] is None


# ----------------------------------------------------------------- aggregates


def test_trials_aggregate_per_level_and_kind() -> None:
    def run(acc: float, it: int) -> dict[str, Any]:
        return {
            "weights_remaining": 0.8,
            "early_stop_iteration": it,
            "early_stop_val_loss": 0.3,
            "early_stop_val_accuracy": acc,
            "early_stop_test_accuracy": acc,
            "final_test_accuracy": acc,
            "curve": [{"iteration": it, "val_accuracy": acc, "test_accuracy": acc}],
        }

    runs = {
        "ticket": run(0.90, 100),
        "ticket.t1": run(0.92, 200),
        "ticket.t2": run(0.94, 400),
        "random_reinit": run(0.80, 300),
        "random_reinit.r1": run(0.82, 300),
        "random_reinit.t1": run(0.84, 300),
    }
    summary = level_summary(1, runs, {"w": {"remaining": 8, "total": 10}})
    t = summary["stats"]["ticket"]["early_stop_test_accuracy"]
    assert t["mean"] == pytest.approx(0.92) and t["std"] == pytest.approx(0.02)
    assert (t["min"], t["max"], t["n"]) == (0.90, 0.94, 3)
    assert summary["early_stop_test_accuracy"] == pytest.approx(0.92)
    assert summary["early_stop_iteration"] == round((100 + 200 + 400) / 3)
    assert summary["controls"]["random_reinit"]["early_stop_test_accuracy"] == pytest.approx(0.82)
    assert summary["stats"]["random_reinit"]["early_stop_test_accuracy"]["n"] == 3
    assert [r["trial"] for r in summary["runs"]["ticket"]] == [0, 1, 2]
    assert [(r["trial"], r["repeat"]) for r in summary["runs"]["random_reinit"]] == [
        (0, 0),
        (0, 1),
        (1, 0),
    ]
    assert stats([1.0])["std"] == 0.0 and stats([float("nan")])["n"] == 0


def test_run_ids_round_trip() -> None:
    assert run_id("ticket") == "ticket"
    assert parse_run_id(run_id("random_reinit", 2, 1)) == ("random_reinit", 2, 1)
    with pytest.raises(ValueError, match="kind"):
        parse_run_id("ticket.t0")


# ----------------------------------------------------------------- baselines


def test_classic_finetune_runs_at_the_final_rate_and_lr_rewind_replays_the_schedule() -> None:
    cfg = TrainingSpec(
        optimizer="sgd",
        learning_rate=0.1,
        batch_size=10,
        iterations=100,
        warmup_iterations=10,
        lr_milestones=[50, 80],
        lr_gamma=0.1,
    )
    tuned = finetune_schedule(cfg, 30)
    assert tuned.iterations == 30 and tuned.warmup_iterations == 0 and not tuned.lr_milestones
    assert tuned.learning_rate == pytest.approx(0.1 * 0.1 * 0.1)  # after every milestone
    assert lr_factor(0, tuned) == 1.0 == lr_factor(29, tuned)
    assert lr_factor(0, cfg) == pytest.approx(0.1)  # lr_rewind replays this warmup


def test_finetune_and_lr_rewind_levels(tmp_path: Path) -> None:
    fine = Experiment(
        tiny_spec(reset={"mode": "finetune", "finetune_iterations": 20}, pruning={"levels": 1}),
        tmp_path / "fine",
        device="cpu",
    )
    fine.run()
    level1 = json.loads(fine.layout.run_metrics(1, "ticket").read_text())
    assert level1["iterations"] == 20 and level1["curve"][-1]["iteration"] == 20
    rewind = Experiment(
        tiny_spec(reset={"mode": "lr_rewind"}, pruning={"levels": 1}),
        tmp_path / "lr",
        device="cpu",
    )
    plan = rewind.plan(0, "ticket")
    assert plan.training.iterations == 60
    with pytest.raises(ValueError, match="finetune_iterations applies"):
        tiny_spec(reset={"mode": "lr_rewind", "finetune_iterations": 5})


def test_one_shot_with_trained_weights_starts_from_the_dense_network(tmp_path: Path) -> None:
    exp = Experiment(
        tiny_spec(
            reset={"mode": "lr_rewind"},
            pruning={"levels": 2, "schedule": "oneshot"},
            training={"iterations": 20, "eval_every": 20},
        ),
        tmp_path,
        device="cpu",
    )
    exp.run()
    dense = exp.layout.trained_weights(0)
    start = exp.plan(2, "ticket").start
    from lth_core.storage.files import load_tensors

    for name, tensor in load_tensors(dense).items():
        assert torch.equal(start[name], tensor)
    level1 = load_tensors(exp.layout.trained_weights(1))
    assert not all(torch.equal(start[n], t) for n, t in level1.items())


# ----------------------------------------------------------------- trials and stacking


def test_stacked_trials_equal_one_by_one_trials(tmp_path: Path) -> None:
    spec = tiny_spec(
        trials=2,
        control_repeats=2,
        controls=["random_reinit"],
        pruning={"levels": 1},
        training={"iterations": 10, "eval_every": 5},
    )
    runs: dict[Any, dict[str, Any]] = {}
    for stack in (True, "one stack", False):
        exp = Experiment(spec, tmp_path / str(stack), device="cpu")
        if stack == "one stack":  # a GPU's grouping: every trial in one stack, own batches
            exp.runner.stack_groups = lambda kinds, level=None: [list(kinds)]  # type: ignore[method-assign]
        else:  # a CPU's grouping: each trial's runs share a batch and stack on their own
            assert exp.stack_groups(exp.runs_at_level(1))[0][0] == "ticket"
        for level in exp.levels:
            exp.prepare_level(level)
            exp.train_runs(level, stack=stack is not False)
            exp.finish_level(level)
        runs[stack] = {k: exp.layout.run_metrics(1, k) for k in exp.runs_at_level(1)}
        assert (exp.layout.root / "trials" / "001" / "ticket.safetensors").is_file()
    assert set(runs[True]) == {
        "ticket",
        "ticket.t1",
        "random_reinit",
        "random_reinit.r1",
        "random_reinit.t1",
        "random_reinit.t1.r1",
    }
    for kind in runs[True]:
        alone = json.loads(runs[False][kind].read_text())
        for stacked in (True, "one stack"):
            got = json.loads(runs[stacked][kind].read_text())
            for pa, pb in zip(got["curve"], alone["curve"], strict=True):
                assert pa["val_loss"] == pytest.approx(pb["val_loss"], rel=1e-4, abs=1e-6)
    # Two trials differ (their own init and data order); two draws of a control differ.
    t0, t1 = (json.loads(runs[False][k].read_text()) for k in ("ticket", "ticket.t1"))
    assert t0["curve"][-1]["val_loss"] != t1["curve"][-1]["val_loss"]
    r0, r1 = (json.loads(runs[False][k].read_text()) for k in ("random_reinit", "random_reinit.r1"))
    assert r0["curve"][-1]["val_loss"] != r1["curve"][-1]["val_loss"]


def test_seeds_name_the_trials() -> None:
    spec = tiny_spec(seeds=[5, 9])
    assert spec.trials == 2 and [spec.trial_seed(t) for t in range(2)] == [5, 9]
    with pytest.raises(ValueError, match="disagree"):
        tiny_spec(seeds=[5, 9], trials=3)
    # Defaults stay out of the spec's dump: a folder from before trials still resumes.
    dumped = tiny_spec().model_dump(mode="json")
    assert "trials" not in dumped and "control_repeats" not in dumped


# ----------------------------------------------------------------- diagnostics


def test_error_barrier_is_zero_for_identical_and_positive_for_different_networks(
    tmp_path: Path,
) -> None:
    from lth_core.nn.data import load_splits

    spec = tiny_spec(training={"iterations": 150, "eval_every": 50})
    a = Experiment(spec, tmp_path / "a", device="cpu")
    b = Experiment(
        parse_spec({**spec.model_dump(mode="json"), "seed": 7}), tmp_path / "b", device="cpu"
    )
    for exp in (a, b):
        exp.prepare_level(0)
        exp.train_runs(0)
    from lth_core.storage.files import load_tensors

    wa, wb = (load_tensors(e.layout.trained_weights(0)) for e in (a, b))
    splits = load_splits(spec.dataset)
    model = a.build(seed=None)
    same = error_barrier(model, wa, wa, splits.val_x, splits.val_y, 5)
    assert same["barrier"] == 0.0 and len(same["errors"]) == 5
    # Two networks trained from different inits are not linearly connected.
    different = error_barrier(model, wa, wb, splits.val_x, splits.val_y, 5)
    assert different["barrier"] > 0.05


def test_instability_analysis_is_reported_per_level(tmp_path: Path) -> None:
    exp = Experiment(
        tiny_spec(
            pruning={"levels": 1},
            training={"iterations": 20, "eval_every": 10},
            analysis={"instability": {"iteration": 10, "points": 3}},
        ),
        tmp_path,
        device="cpu",
    )
    exp.run()
    summary = json.loads(exp.layout.summary(1).read_text())
    inst = summary["instability"]
    # The earlier form {"iteration": k} is the sweep [k] (Frankle et al. 2020's measurement).
    assert inst["iterations"] == [10] and inst["measured_on"] == "validation"
    (at_10,) = inst["by_iteration"]
    assert len(at_10["trials"][0]["errors"]) == 3 and at_10["barrier"] >= 0.0


def test_hamming_distances_on_known_masks() -> None:
    a = {"x": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "y": torch.ones(6, dtype=torch.bool)}
    b = {"x": torch.tensor([1, 0, 1, 0], dtype=torch.bool), "y": torch.ones(6, dtype=torch.bool)}
    d = pruning.hamming(a, b)
    assert d["layers"] == {"x": 0.5, "y": 0.0}
    assert d["overall"] == pytest.approx(2 / 10)


def test_level_reports_mask_distance_and_fractions_of_all_weights(tmp_path: Path) -> None:
    exp = Experiment(
        tiny_spec(pruning={"levels": 1}, training={"iterations": 20, "eval_every": 10}),
        tmp_path,
        device="cpu",
    )
    exp.run()
    s0, s1 = (json.loads(exp.layout.summary(level).read_text()) for level in (0, 1))
    assert s0["mask_distance"] is None
    dist = s1["mask_distance"]
    # LeNet: fc 20%, output 10% pruned from a dense mask, so exactly those fractions differ.
    assert dist["layers"]["fc1.weight"] == pytest.approx(0.2, abs=1e-3)
    assert dist["layers"]["out.weight"] == pytest.approx(0.1, abs=1e-2)
    weights = s1["weights"]
    assert weights["of_prunable"] == s1["weights_remaining"]
    assert weights["of_prunable"] < weights["of_all"] < 1.0  # biases are never pruned


def test_supermask_takes_no_optimizer_step(tmp_path: Path, monkeypatch) -> None:
    exp = Experiment(
        tiny_spec(
            pruning={"levels": 1},
            controls=["supermask"],
            control_repeats=3,
            training={"iterations": 20, "eval_every": 10},
        ),
        tmp_path,
        device="cpu",
    )
    assert exp.runs_at_level(1) == ["ticket", "supermask"]  # one draw: it is deterministic
    exp.prepare_level(0)
    exp.train_runs(0)
    exp.finish_level(0)
    exp.prepare_level(1)
    from lth_core.train import optim

    def no_step(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("supermask took an optimizer step")

    monkeypatch.setattr(optim.FusedStep, "step", no_step)
    run = exp.train_run(1, "supermask")
    assert run["iterations"] == 0 and run["early_stop_iteration"] == 0
    assert len(run["curve"]) == 1 and 0.0 <= run["early_stop_test_accuracy"] <= 1.0


def test_transfer_with_init_uses_the_source_weights(tmp_path: Path) -> None:
    source = Experiment(
        tiny_spec(pruning={"levels": 1}, training={"iterations": 20, "eval_every": 10}, seed=3),
        tmp_path / "source",
        device="cpu",
    )
    source.run()
    mask_file = source.layout.mask(1)
    transfer = {"experiment_id": "src", "level": 1}
    common = {"pruning": {"levels": 0}, "training": {"iterations": 20, "eval_every": 10}}
    own = Experiment(
        tiny_spec(mask=transfer, **common), tmp_path / "own", device="cpu", initial_mask=mask_file
    )
    inherited = Experiment(
        tiny_spec(mask={**transfer, "with_init": True}, **common),
        tmp_path / "inherited",
        device="cpu",
        initial_mask=mask_file,
    )
    for name, tensor in source.theta0.items():
        assert torch.equal(inherited.theta0[name], tensor)
    assert not torch.equal(own.theta0["fc1.weight"], source.theta0["fc1.weight"])
    # A ticket file carries its init: the same weights come from its init/ entries.
    ticket = Experiment(
        tiny_spec(mask={**transfer, "with_init": True}, **common),
        tmp_path / "ticket",
        device="cpu",
        initial_mask=source.layout.ticket,
    )
    assert torch.equal(ticket.theta0["fc1.weight"], source.theta0["fc1.weight"])


def test_the_level_table_shows_mean_and_std_with_trials() -> None:
    from rich.console import Console

    from cli.render import level_table

    def run(acc: float) -> dict[str, Any]:
        return {
            "weights_remaining": 1.0,
            "early_stop_iteration": 100,
            "early_stop_val_loss": 0.3,
            "early_stop_val_accuracy": acc,
            "early_stop_test_accuracy": acc,
            "final_test_accuracy": acc,
            "curve": [{"iteration": 100, "val_accuracy": acc, "test_accuracy": acc}],
        }

    summary = level_summary(0, {"ticket": run(0.90), "ticket.t1": run(0.92)}, {})
    console = Console(record=True, width=200)
    console.print(level_table([summary], 0))
    text = console.export_text()
    assert "91.00 ± 1.41" in text and "mean ± std" in text and "2 trials" in text
