"""The IMP loop end to end on tiny synthetic data: the bugs public reimplementations shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_helpers import run_tiny, tiny_spec
from safetensors import safe_open
from safetensors.torch import load_file

import lth_core.imp.runner as runner_module
from lth_core.experiment import Cancelled, Experiment
from lth_core.train.training import train_members as real_train_members


def _capture_starts(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Records each run's weights as training starts (after the mask is applied)."""
    starts: list[dict] = []

    def spy(members, *args, **kwargs):
        for member in members:
            with torch.no_grad():
                state = {k: v.clone() for k, v in member.model.state_dict().items()}
                for name, m in member.mask.items():
                    state[name] *= m
            starts.append({"state": state, "start_iteration": kwargs["start_iteration"]})
        return real_train_members(members, *args, **kwargs)

    monkeypatch.setattr(runner_module, "train_members", spy)
    return starts


def test_surviving_weights_are_reset_to_theta0_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _capture_starts(monkeypatch)
    exp = run_tiny(tmp_path)
    theta0 = load_file(tmp_path / "init.safetensors")
    assert len(starts) == 3  # levels 0, 1, 2; no controls
    for level, start in enumerate(starts):
        mask = load_file(exp.layout.mask(level))
        for name, value in start["state"].items():
            expected = theta0[name] * mask[name] if name in mask else theta0[name]
            assert torch.equal(value, expected), (level, name)


def test_pruned_weights_stay_exactly_zero_through_training(tmp_path: Path) -> None:
    # SGD with momentum and weight decay would move pruned weights off zero if the mask were
    # only applied once: the network would drift back toward dense.
    exp = run_tiny(
        tmp_path,
        training={"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
        pruning={"levels": 3},
    )
    for level in range(1, 4):
        mask = load_file(exp.layout.mask(level))
        trained = load_file(exp.layout.trained_weights(level))
        for name, m in mask.items():
            assert (trained[name][~m] == 0).all(), (level, name)
            assert (trained[name][m] != 0).float().mean() > 0.99  # survivors did train


def test_masks_shrink_by_the_schedule_and_weights_remaining_is_reported(tmp_path: Path) -> None:
    exp = run_tiny(tmp_path, pruning={"levels": 3})
    expected = {"fc1.weight": 235_200, "fc2.weight": 30_000, "out.weight": 1_000}
    rates = {"fc1.weight": 0.2, "fc2.weight": 0.2, "out.weight": 0.1}
    for level in range(4):
        summary = json.loads(exp.layout.summary(level).read_text())
        assert {n: c["remaining"] for n, c in summary["layers"].items()} == expected
        assert summary["weights_remaining"] == pytest.approx(sum(expected.values()) / 266_200)
        expected = {n: c - int(rates[n] * c + 0.5) for n, c in expected.items()}


def test_early_stop_iteration_is_the_argmin_of_validation_loss(tmp_path: Path) -> None:
    exp = run_tiny(tmp_path, training={"iterations": 200, "eval_every": 10}, pruning={"levels": 0})
    run = json.loads(exp.layout.run_metrics(0, "ticket").read_text())
    curve = run["curve"]
    assert [p["iteration"] for p in curve] == list(range(0, 201, 10))
    best = min(curve, key=lambda p: p["val_loss"])
    assert run["early_stop_iteration"] == best["iteration"]
    assert run["early_stop_test_accuracy"] == best["test_accuracy"]
    assert run["early_stop_val_loss"] == best["val_loss"]
    assert run["final_test_accuracy"] == curve[-1]["test_accuracy"]


def test_same_spec_and_seed_give_bit_identical_masks_and_metrics(tmp_path: Path) -> None:
    sections = {"pruning": {"levels": 2}, "controls": ["random_reinit", "random_prune"]}
    a = run_tiny(tmp_path / "a", **sections)
    b = run_tiny(tmp_path / "b", **sections)
    for level in range(3):
        ma, mb = load_file(a.layout.mask(level)), load_file(b.layout.mask(level))
        assert all(torch.equal(ma[n], mb[n]) for n in ma)
        for kind in a.runs_at_level(level):
            ra = json.loads(a.layout.run_metrics(level, kind).read_text())
            rb = json.loads(b.layout.run_metrics(level, kind).read_text())
            ra.pop("seconds"), rb.pop("seconds")
            assert ra == rb, (level, kind)
    c = run_tiny(tmp_path / "c", seed=1, **sections)
    assert not torch.equal(
        load_file(a.layout.mask(1))["fc1.weight"], load_file(c.layout.mask(1))["fc1.weight"]
    )


def test_an_interrupted_experiment_resumes_to_the_same_results(tmp_path: Path) -> None:
    sections = {"pruning": {"levels": 2}, "controls": ["random_reinit"]}
    reference = run_tiny(tmp_path / "ref", **sections)
    calls = {"n": 0}

    def stop_in_level_one() -> bool:
        calls["n"] += 1
        return calls["n"] == 6  # level 0 has 4 evaluations; stop inside level 1's ticket

    with pytest.raises(Cancelled):
        Experiment(
            tiny_spec(**sections), tmp_path / "cut", device="cpu", should_stop=stop_in_level_one
        ).run()
    resumed = Experiment(tiny_spec(**sections), tmp_path / "cut", device="cpu")
    assert resumed.pending()[0] == (1, "ticket")
    resumed.run()
    assert reference.summaries() == resumed.summaries() or _same_but_seconds(reference, resumed)


def _same_but_seconds(a: Experiment, b: Experiment) -> bool:
    """Equal but for the wall seconds each level's cost sums (lth_core.results.cost)."""

    def timeless(exp: Experiment) -> str:
        out = [
            {
                **s,
                "cost": {
                    **s["cost"],
                    "seconds": None,
                    "kinds": {k: {**c, "seconds": None} for k, c in s["cost"]["kinds"].items()},
                },
            }
            for s in exp.summaries()
        ]
        return json.dumps(out, sort_keys=True)

    return timeless(a) == timeless(b)


def test_controls_random_reinit_and_random_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _capture_starts(monkeypatch)
    exp = run_tiny(tmp_path, pruning={"levels": 1}, controls=["random_reinit", "random_prune"])
    assert exp.runs_at_level(0) == ["ticket"] and exp.runs_at_level(1) == [
        "ticket",
        "random_reinit",
        "random_prune",
    ]
    ticket, reinit, rprune = starts[1:]
    mask = load_file(exp.layout.mask(1))
    # random_reinit: same mask (zeros in the same places), different surviving values.
    for name, m in mask.items():
        assert (reinit["state"][name][~m] == 0).all()
        assert not torch.equal(reinit["state"][name], ticket["state"][name])
    # random_prune: original init, a different mask with the same per-layer counts.
    for name, m in mask.items():
        pruned_here = rprune["state"][name] != 0
        assert int(pruned_here.sum()) == int(m.sum())
        assert not torch.equal(pruned_here, m)
    summary = json.loads(exp.layout.summary(1).read_text())
    assert set(summary["controls"]) == {"random_reinit", "random_prune"}
    assert summary["controls"]["random_prune"]["weights_remaining"] == summary["weights_remaining"]


def test_rewind_resets_to_iteration_k_and_resumes_the_schedule_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _capture_starts(monkeypatch)
    exp = run_tiny(
        tmp_path, reset={"mode": "rewind", "rewind_iteration": 20}, pruning={"levels": 1}
    )
    theta_k = load_file(exp.layout.rewind_weights)
    theta0 = load_file(exp.layout.init_weights)
    assert not torch.equal(theta_k["fc1.weight"], theta0["fc1.weight"])
    mask = load_file(exp.layout.mask(1))
    assert starts[1]["start_iteration"] == 20
    assert torch.equal(starts[1]["state"]["fc1.weight"], theta_k["fc1.weight"] * mask["fc1.weight"])
    curve = json.loads(exp.layout.run_metrics(1, "ticket").read_text())["curve"]
    assert curve[0]["iteration"] == 20


def test_finetune_keeps_the_trained_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _capture_starts(monkeypatch)
    exp = run_tiny(tmp_path, reset={"mode": "finetune"}, pruning={"levels": 1})
    trained0 = load_file(exp.layout.trained_weights(0))
    mask = load_file(exp.layout.mask(1))
    assert torch.equal(
        starts[1]["state"]["fc1.weight"], trained0["fc1.weight"] * mask["fc1.weight"]
    )


def test_oneshot_prunes_the_dense_trained_network_to_each_levels_sparsity(tmp_path: Path) -> None:
    iterative = run_tiny(tmp_path / "it", pruning={"levels": 3})
    oneshot = run_tiny(tmp_path / "os", pruning={"levels": 3, "schedule": "oneshot"})
    trained0 = load_file(oneshot.layout.trained_weights(0))
    for level in (1, 2, 3):
        a, b = load_file(iterative.layout.mask(level)), load_file(oneshot.layout.mask(level))
        assert {n: int(m.sum()) for n, m in a.items()} == {n: int(m.sum()) for n, m in b.items()}
        for name, m in b.items():  # survivors are the largest-magnitude *dense-trained* weights
            assert trained0[name][m].abs().min() >= trained0[name][~m].abs().max()


def test_the_ticket_file_holds_masks_and_initial_not_trained_weights(tmp_path: Path) -> None:
    exp = run_tiny(tmp_path, pruning={"levels": 2}, ticket_tolerance=1.0)
    results = json.loads(exp.layout.results.read_text())
    assert results["ticket_level"] == 2  # tolerance 1.0: the sparsest level wins
    ticket = load_file(tmp_path / "ticket.safetensors")
    theta0 = load_file(exp.layout.init_weights)
    trained = load_file(exp.layout.trained_weights(2))
    mask = load_file(exp.layout.mask(2))
    for name, value in theta0.items():
        assert torch.equal(ticket[f"init/{name}"], value)
    assert not torch.equal(ticket["init/fc1.weight"], trained["fc1.weight"])
    for name, m in mask.items():
        assert torch.equal(ticket[f"mask/{name}"], m)
    with safe_open(str(tmp_path / "ticket.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["spec"])["model"] == "lenet_300_100"
    assert json.loads(meta["metrics"])["level"] == 2


def test_training_from_a_given_mask(tmp_path: Path) -> None:
    source = run_tiny(tmp_path / "src", pruning={"levels": 2})
    spec = tiny_spec(pruning={"levels": 1}, seed=7)  # a local file: no service reference
    exp = Experiment(spec, tmp_path / "new", device="cpu", initial_mask=source.layout.mask(2))
    assert exp.runs_at_level(0) == exp.runs_at_level(1)  # level 0 has a mask to control for
    exp.run()
    given = load_file(source.layout.mask(2))
    level0 = load_file(exp.layout.mask(0))
    assert all(torch.equal(given[n], level0[n]) for n in given)
    summaries = exp.summaries()
    assert summaries[0]["weights_remaining"] == source.summaries()[2]["weights_remaining"]


def test_a_mask_of_the_wrong_shape_is_refused_clearly(tmp_path: Path) -> None:
    source = run_tiny(tmp_path / "src", pruning={"levels": 0})
    spec = parse_conv = tiny_spec(
        model="conv2",
        dataset={"synthetic": {"input_shape": [3, 8, 8]}},
        pruning={"levels": 0},
    )
    del parse_conv
    # The mask file's provenance says whose it is (lth_core.storage.provenance).
    with pytest.raises(ValueError, match=r"this is lenet_300_100's mask .*model is conv2"):
        Experiment(spec, tmp_path / "new", device="cpu", initial_mask=source.layout.mask(0)).run()


def test_an_out_dir_of_another_experiment_is_refused(tmp_path: Path) -> None:
    run_tiny(tmp_path, pruning={"levels": 0})
    with pytest.raises(ValueError, match="different experiment"):
        Experiment(tiny_spec(seed=3), tmp_path, device="cpu")


def test_progress_events_cover_every_run_and_evaluation(tmp_path: Path) -> None:
    events = []
    exp = Experiment(
        tiny_spec(pruning={"levels": 1}, controls=["random_reinit"]),
        tmp_path,
        device="cpu",
        progress=events.append,
    )
    exp.run()
    keys = {(e.level, e.kind) for e in events}
    assert keys == {(0, "ticket"), (1, "ticket"), (1, "random_reinit")}
    evals = [e for e in events if e.record is not None and e.level == 1 and e.kind == "ticket"]
    assert [e.iteration for e in evals] == [0, 20, 40, 60]
    assert all(e.iterations == 60 for e in events)
