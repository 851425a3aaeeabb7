"""Verification that deserves the word, and transparent stacking (issue 27, items 4, 8, 9):
verify's cross-field checks, its repeats (paired units with their own data orders, counted
in cost), early-bird and patience never cutting the dense reference or the controls short,
and a stack with patience giving what one-by-one training gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import TINY, run_tiny, tiny_spec
from pydantic import ValidationError

from lth_core.experiment import Experiment
from lth_core.spec import _merge, parse_spec
from lth_core.spec.errors import problems

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _refusal(**sections: Any) -> str:
    with pytest.raises(ValidationError) as info:
        tiny_spec(**sections)
    (problem,) = problems(info.value)
    return problem.line


def test_verify_without_random_reinit_is_refused() -> None:
    line = _refusal(verify=True, controls=["random_prune"])
    assert "verify needs 'random_reinit' in controls" in line and "\n" not in line
    assert "random_reinit" in _refusal(verify={"patience": 5}, controls=[])
    tiny_spec(verify=True, controls=["random_reinit"])  # accepted with it


def test_verify_patience_below_training_patience_is_refused() -> None:
    line = _refusal(verify={"patience": 2}, controls=["random_reinit"], training={"patience": 3})
    assert "verify.patience (2) must be at least training.patience (3)" in line
    tiny_spec(verify={"patience": 3}, controls=["random_reinit"], training={"patience": 3})
    tiny_spec(verify=True, controls=["random_reinit"], training={"patience": 3})  # full budget


def test_controls_at_ticket_level_needs_verify() -> None:
    line = _refusal(controls_at="ticket_level", controls=["random_reinit"])
    assert "controls_at 'ticket_level' needs verify" in line


def test_verify_repeats_default_three_and_stay_out_of_the_dump() -> None:
    spec = tiny_spec(verify=True, controls=["random_reinit"])
    assert spec.verify_rule is not None and spec.verify_rule.repeats == 3
    assert spec.model_dump(mode="json")["verify"] is True
    with pytest.raises(ValidationError) as info:
        tiny_spec(verify={"repeats": 0}, controls=["random_reinit"])
    assert any("repeats: must be >= 1" in p.line for p in problems(info.value))


def test_repeats_train_with_their_own_data_orders_and_are_counted_in_cost(
    tmp_path: Path,
) -> None:
    exp = run_tiny(
        tmp_path,
        training={"iterations": 40, "eval_every": 20},
        pruning={"levels": 1},
        controls=["random_reinit"],
        verify={"repeats": 2},
    )
    assert exp.runs_at_level(0) == ["ticket", "ticket.r1"]
    assert exp.runs_at_level(1) == ["ticket", "ticket.r1", "random_reinit", "random_reinit.r1"]
    seeds = {k: exp.plan(1, k).data_seed for k in exp.runs_at_level(1)}
    # Unit 1 has its own data order, shared by its ticket and its control (paired by unit).
    assert seeds["ticket"] == seeds["random_reinit"] != seeds["ticket.r1"]
    assert seeds["ticket.r1"] == seeds["random_reinit.r1"]
    assert exp.plan(0, "ticket.r1").data_seed == seeds["ticket.r1"]
    # Same start, other data order: other weights, other curve.
    runs = {k: json.loads(exp.layout.run_metrics(0, k).read_text()) for k in exp.runs_at_level(0)}
    assert runs["ticket"]["curve"][-1] != runs["ticket.r1"]["curve"][-1]
    # Only the first repeat feeds the next level (its trained weights), and only it is kept.
    summaries = exp.summaries()
    assert summaries[0]["cost"]["runs"] == 2 and summaries[0]["cost"]["iterations"] == 80
    assert summaries[1]["cost"]["kinds"]["ticket"] == {
        "iterations": 80,
        "seconds": pytest.approx(summaries[1]["cost"]["kinds"]["ticket"]["seconds"]),
        "runs": 2,
    }
    results = json.loads(exp.layout.results.read_text())
    assert results["cost"]["iterations"] == 80 + 160
    assert results["cost"]["kinds"]["random_reinit"]["runs"] == 2


def test_early_bird_never_stops_level_0_or_the_stacked_controls(tmp_path: Path) -> None:
    spec = tiny_spec(
        training={"iterations": 200, "eval_every": 20, "stack_runs": "auto"},
        pruning={"levels": 2, "early_bird": {"distance": 0.5, "window": 1}},
        controls=["random_reinit", "random_prune"],
    )
    exp = Experiment(spec, tmp_path, device="cpu")
    for level in exp.levels:
        exp.prepare_level(level)
        exp.train_runs(level, stack=True)
        exp.finish_level(level)
    assert exp.stacks_level(1, True)
    run = lambda level, kind: json.loads(exp.layout.run_metrics(level, kind).read_text())  # noqa: E731
    assert run(0, "ticket")["iterations"] == 200  # the dense reference trains its budget
    assert run(1, "ticket")["iterations"] == run(1, "ticket")["mask_drawn_at"] == 20
    assert run(1, "random_reinit")["iterations"] == run(1, "random_prune")["iterations"] == 200
    assert run(1, "random_reinit")["curve"][-1]["iteration"] == 200
    assert run(1, "ticket")["curve"][-1]["iteration"] == 20


# LeNet stacks by hand (StackedMLP); Conv-2 through torch.func.vmap (StackedModel).
_PATIENCE_SPECS = {
    "lenet": {"training": {"iterations": 400}},
    "conv2_vmap": {
        "model": "conv2",
        "dataset": {"synthetic": {"input_shape": [3, 8, 8]}},
        "training": {"iterations": 300, "optimizer": "adam", "batch_size": 20},
    },
}


def _patience_level(out: Path, stack: bool, model: str) -> dict[str, dict[str, Any]]:
    common = {
        "training": {"eval_every": 10, "patience": 3, "learning_rate": 0.01},
        "pruning": {"levels": 1},
        "controls": ["random_reinit", "random_prune"],
    }
    spec = parse_spec(_merge(_merge(TINY, common), _PATIENCE_SPECS[model]))
    exp = Experiment(spec, out, device="cpu")
    for level in exp.levels:
        exp.prepare_level(level)
        exp.train_runs(level, stack=stack)
        exp.finish_level(level)
    assert exp.stacks_level(1, stack) == stack
    return {k: json.loads(exp.layout.run_metrics(1, k).read_text()) for k in exp.runs_at_level(1)}


@pytest.mark.parametrize("model", sorted(_PATIENCE_SPECS))
def test_a_stack_with_patience_equals_one_by_one(tmp_path: Path, model: str) -> None:
    alone = _patience_level(tmp_path / "alone", False, model)
    stacked = _patience_level(tmp_path / "stacked", True, model)
    stops = {run["iterations"] for run in alone.values()}
    assert len(stops) > 1, "the members must stop at different iterations to test anything"
    for kind, run in alone.items():
        other = stacked[kind]
        for field in ("iterations", "stopped_at", "early_stop_iteration"):
            assert other[field] == run[field], (kind, field)
        assert other["cost"]["iterations"] == run["cost"]["iterations"]
        assert [p["iteration"] for p in other["curve"]] == [p["iteration"] for p in run["curve"]]
        for a, b in zip(run["curve"], other["curve"], strict=True):
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4, abs=1e-6)
            assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=2e-2)
