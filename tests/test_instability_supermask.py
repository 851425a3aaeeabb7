"""Instability as Frankle et al. 2020 measure it, and Zhou et al. 2019's supermasks (issue 27,
items 6, 7, 9): the copies start from the dense run's theta_k under the level's mask (bit for
bit), the barrier of a crafted path, the sweep's suggestion and cost, the figure; the three
supermask variants on a toy net and in an experiment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_helpers import run_tiny, tiny_spec
from pydantic import ValidationError

from lth_core.controls.supermask import (
    SupermaskSameSign,
    SupermaskSignedConstant,
    keep_top,
    same_sign_scores,
)
from lth_core.diagnostics import instability
from lth_core.diagnostics.instability import barrier_of, suggest
from lth_core.report.figures import render, source_from_run_dir
from lth_core.report.instability import instability_figure
from lth_core.storage.files import load_tensors

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ----------------------------------------------------------------- the spec


def test_instability_spec_sweeps_k_and_reads_the_earlier_form() -> None:
    spec = tiny_spec(analysis={"instability": {"iterations": [0, 20, 40]}})
    assert spec.analysis is not None and spec.analysis.instability is not None
    inst = spec.analysis.instability
    assert inst.iterations == [0, 20, 40] and inst.points == 30 and inst.threshold == 0.02
    old = tiny_spec(analysis={"instability": {"iteration": 20, "points": 5}})
    assert old.analysis.instability.iterations == [20]  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="strictly increasing"):
        tiny_spec(analysis={"instability": {"iterations": [20, 0]}})
    with pytest.raises(ValidationError, match=r"must be below training\.iterations"):
        tiny_spec(analysis={"instability": {"iterations": [0, 60]}})


# ----------------------------------------------------------------- the barrier


def test_barrier_of_a_crafted_path() -> None:
    # A bump in the middle: 0.30 against ends 0.10 and 0.12 (mean 0.11).
    bump = barrier_of([0.10, 0.20, 0.30, 0.15, 0.12])
    assert bump["barrier"] == pytest.approx(0.19)
    assert bump["max_at"] == 0.5 and not bump["max_at_endpoint"]
    assert bump["endpoint_spread"] == pytest.approx(0.02)
    # Monotone between unequal ends: the "barrier" is half the gap, at an endpoint: noise.
    ramp = barrier_of([0.10, 0.12, 0.16, 0.20])
    assert ramp["barrier"] == pytest.approx(0.05) and ramp["max_at_endpoint"]
    assert ramp["endpoint_spread"] == pytest.approx(0.10)
    flat = barrier_of([0.1, 0.1, 0.1])
    assert flat["barrier"] == 0.0


def test_suggested_rewinding_iteration_is_the_smallest_stable_k() -> None:
    by_k = [
        {"iteration": 0, "barrier": 0.08},
        {"iteration": 100, "barrier": 0.01},
        {"iteration": 500, "barrier": 0.0},
    ]
    assert suggest(by_k, 0.02) == 100
    assert suggest(by_k, 0.005) == 500
    assert suggest([{"iteration": 0, "barrier": None}], 0.02) is None


# ----------------------------------------------------------------- the experiment


def test_copies_start_from_the_dense_theta_k_under_the_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    real = instability.train_copy

    def spy(model: Any, start: Any, mask: Any, *args: Any, **kwargs: Any) -> Any:
        starts.append((kwargs["k"], {n: t.clone() for n, t in start.items()}, mask))
        return real(model, start, mask, *args, **kwargs)

    monkeypatch.setattr(instability, "train_copy", spy)
    sections: dict[str, Any] = {
        "training": {"iterations": 40, "eval_every": 10},
        "pruning": {"levels": 1},
        "analysis": {"instability": {"iterations": [0, 20], "points": 5}},
    }
    exp = run_tiny(tmp_path / "exp", **sections)
    # theta_k was kept while level 0 trained: k = 0 is theta_0, k = 20 is what training the
    # same dense run for 20 iterations gives, bit for bit.
    dense0 = load_tensors(exp.layout.root / "levels/000/dense_at/0000000.safetensors")
    dense20 = load_tensors(exp.layout.root / "levels/000/dense_at/0000020.safetensors")
    init = load_tensors(exp.layout.init_weights)
    assert all(torch.equal(dense0[n], init[n]) for n in init)
    short = run_tiny(
        tmp_path / "short",
        training={"iterations": 20, "eval_every": 10},
        pruning={"levels": 0},
    )
    trained20 = load_tensors(short.layout.trained_weights(0))
    assert all(torch.equal(dense20[n], trained20[n]) for n in trained20)
    # Level 1's copies start from those weights times level 1's mask, both copies, each k.
    mask1 = load_tensors(exp.layout.mask(1))
    level1 = [(k, s) for k, s, m in starts if all(torch.equal(m[n], mask1[n]) for n in mask1)]
    assert sorted(k for k, _ in level1) == [0, 0, 20, 20]
    for k, start in level1:
        dense = dense0 if k == 0 else dense20
        for name, tensor in start.items():
            expected = dense[name] * mask1[name] if name in mask1 else dense[name]
            assert torch.equal(tensor, expected), (k, name)
    summary = json.loads(exp.layout.summary(1).read_text())
    inst = summary["instability"]
    assert [e["iteration"] for e in inst["by_iteration"]] == [0, 20]
    assert inst["threshold"] == 0.02 and inst["measured_on"] == "validation"
    assert len(inst["by_iteration"][0]["trials"][0]["errors"]) == 5
    # Cost counts the copies: two per k, each from k to the end (40 + 20 iterations).
    assert inst["cost"]["iterations"] == 2 * (40 + 20) and inst["cost"]["runs"] == 4
    assert summary["cost"]["kinds"]["instability"]["iterations"] == 120
    assert summary["cost"]["iterations"] == 40 + 120
    results = json.loads(exp.layout.results.read_text())
    assert results["cost"]["kinds"]["instability"]["iterations"] == 2 * 120
    # The figure: one barrier and one spread line per level, the threshold as a rule.
    figure = instability_figure([source_from_run_dir(exp.layout.root)])
    rows = figure["data"]["values"]
    assert {(r["level"], r["kind"]) for r in rows} == {
        (level, kind) for level in (0, 1) for kind in ("error barrier", "endpoint spread")
    }
    assert render(figure, "svg").lstrip().startswith(b"<svg")


# ----------------------------------------------------------------- supermasks


class _Toy:
    """A RunContext over a toy two-layer net: theta_0 and the weights a mask was pruned from."""

    def __init__(self) -> None:
        self.theta0 = {
            "w": torch.tensor([[0.5, -0.4, 0.3], [-0.2, 0.1, -0.6]]),
            "b": torch.tensor([0.1, -0.1]),
        }
        # Trained: entries 0 and 5 flipped their sign (large, but not same-sign); entry 4 was
        # pruned before (alive False).
        self.final = {"w": torch.tensor([[-0.9, -0.8, 0.2], [-0.7, 0.05, 0.95]])}
        self.alive = {"w": torch.tensor([[True, True, True], [True, False, True]])}

    def seed_for(self, *parts: object) -> int:
        return 0

    def build(self, seed: int | None) -> Any:
        raise AssertionError("supermasks draw no fresh weights")

    def prunable_weights(self) -> list[str]:
        return ["w"]

    def pruned_from(self, level: int) -> Any:
        return (self.final, self.alive) if level > 0 else None


def test_same_sign_mask_keeps_the_largest_final_weights_that_kept_their_sign() -> None:
    toy = _Toy()
    ticket = {"w": torch.tensor([[True, True, False], [True, False, False]])}  # keeps 3
    scores = same_sign_scores(toy.final["w"], toy.theta0["w"], toy.alive["w"])
    assert scores.flatten().tolist() == pytest.approx([0.0, 0.8, 0.2, 0.7, -1.0, 0.0])
    mask = SupermaskSameSign().mask(toy, 1, ticket)  # type: ignore[arg-type]
    # The three same-sign ones by |final|: 0.8, 0.7, 0.2 (not the flipped 0.9 and 0.95).
    assert mask["w"].tolist() == [[False, True, True], [True, False, False]]
    assert int(mask["w"].sum()) == int(ticket["w"].sum())
    assert SupermaskSameSign().start(toy, 1, lambda: {}) is toy.theta0  # type: ignore[arg-type]
    assert SupermaskSameSign().mask(toy, 0, ticket) is ticket  # type: ignore[arg-type]
    assert keep_top(torch.tensor([1.0, 1.0, 0.0]), 1).tolist() == [True, False, False]


def test_signed_constant_sets_kept_weights_to_the_layer_std_with_theta0_signs() -> None:
    toy = _Toy()
    start = SupermaskSignedConstant().start(toy, 1, lambda: {})  # type: ignore[arg-type]
    sigma = float(toy.theta0["w"].std())
    assert torch.equal(start["w"].abs(), torch.full_like(start["w"], sigma))
    assert torch.equal(torch.sign(start["w"]), torch.sign(toy.theta0["w"]))
    assert torch.equal(start["b"], toy.theta0["b"])  # not prunable: theta_0's


def test_the_three_supermasks_are_evaluated_untrained_in_an_experiment(tmp_path: Path) -> None:
    kinds = ["supermask", "supermask_same_sign", "supermask_signed_constant"]
    exp = run_tiny(
        tmp_path,
        training={"iterations": 40, "eval_every": 20},
        pruning={"levels": 1},
        controls=kinds,
        control_repeats=2,
    )
    assert exp.runs_at_level(1) == ["ticket", *kinds]  # deterministic: one draw each
    ticket_mask = load_tensors(exp.layout.mask(1))
    for kind in kinds:
        run = json.loads(exp.layout.run_metrics(1, kind).read_text())
        assert run["iterations"] == 0 and run["early_stop_iteration"] == 0
        assert 0.0 <= run["early_stop_val_accuracy"] <= 1.0
        plan = exp.plan(1, kind)
        assert {n: int(m.sum()) for n, m in plan.mask.items()} == {
            n: int(m.sum()) for n, m in ticket_mask.items()
        }
    same = exp.plan(1, "supermask_same_sign")
    theta0, trained = (
        load_tensors(exp.layout.init_weights),
        load_tensors(exp.layout.trained_weights(0)),
    )
    for name, m in same.mask.items():
        flipped = torch.sign(trained[name]) != torch.sign(theta0[name])
        assert not bool((m & flipped).any()) or int(m.sum()) > int((~flipped).sum())
