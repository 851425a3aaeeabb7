"""What a run starts from (RunPlan), the control registry, and the mask a folder was made with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_helpers import run_tiny, tiny_spec
from safetensors.torch import load_file
from test_engine_digests import folder_digest, run_spec

from lth_core.experiment import Experiment
from lth_core.registry.controls import CONTROLS, control

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sign_preserving_reinit_keeps_theta0_signs_with_fresh_magnitudes(tmp_path: Path) -> None:
    exp = run_tiny(tmp_path, pruning={"levels": 1}, controls=["sign_preserving_reinit"])
    assert exp.runs_at_level(1) == ["ticket", "sign_preserving_reinit"]
    plan = exp.plan(1, "sign_preserving_reinit")
    ticket = exp.plan(1, "ticket")
    theta0 = load_file(exp.layout.init_weights)
    for name in exp.kinds:
        start = plan.start[name]
        assert torch.equal(torch.sign(start), torch.sign(theta0[name])), name
        assert not torch.equal(start.abs(), theta0[name].abs()), name  # magnitudes re-drawn
        assert torch.equal(plan.mask[name], ticket.mask[name])  # the ticket's mask
    assert plan.start_iteration == ticket.start_iteration
    run = json.loads(exp.layout.run_metrics(1, "sign_preserving_reinit").read_text())
    assert run["weights_remaining"] == pytest.approx(ticket_weights(exp))


def ticket_weights(exp: Experiment) -> float:
    return json.loads(exp.layout.run_metrics(1, "ticket").read_text())["weights_remaining"]


def test_every_control_entry_defines_how_its_mask_and_start_are_made() -> None:
    for name in CONTROLS:
        entry = control(name)
        assert callable(entry.mask) and callable(entry.start) and entry.description, name
    with pytest.raises(ValueError, match="known: random_reinit"):
        control("nope")


def test_a_rewinding_stack_takes_the_snapshot_itself(tmp_path: Path) -> None:
    """Level 0 from a given mask has controls: with rewinding it is stacked like any level
    (the stack snapshots theta_k), no longer forced one by one."""
    source = run_tiny(tmp_path / "src", pruning={"levels": 1})
    spec = tiny_spec(
        pruning={"levels": 0},
        controls=["random_reinit"],
        reset={"mode": "rewind", "rewind_iteration": 20},
    )
    exp = Experiment(spec, tmp_path / "new", device="cpu", initial_mask=source.layout.mask(1))
    assert exp.stacks_level(0, stack=True)
    exp.prepare_level(0)
    assert [r["kind"] for r in exp.train_runs(0, stack=True)] == ["ticket", "random_reinit"]
    assert exp.layout.rewind_weights.is_file()
    theta_k = load_file(exp.layout.rewind_weights)
    assert set(theta_k) == set(load_file(exp.layout.init_weights))


def test_a_folder_records_its_mask_and_refuses_another(tmp_path: Path) -> None:
    source = run_tiny(tmp_path / "src", pruning={"levels": 2})
    spec = tiny_spec(pruning={"levels": 0})
    out = tmp_path / "new"
    Experiment(spec, out, device="cpu", initial_mask=source.layout.mask(1)).run()
    record = json.loads((out / "initial_mask.json").read_text())
    assert record["path"] == str(source.layout.mask(1)) and len(record["sha256"]) == 64
    assert json.loads((out / "spec.json").read_text())["mask"] is None  # no fake source
    Experiment(spec, out, device="cpu", initial_mask=source.layout.mask(1))  # same: resumes
    with pytest.raises(ValueError, match="is a different mask: use a new output folder"):
        Experiment(spec, out, device="cpu", initial_mask=source.layout.mask(2))
    with pytest.raises(ValueError, match="pass it again"):
        Experiment(spec, out, device="cpu")
    (out / "x").write_bytes(source.layout.mask(1).read_bytes())
    with pytest.raises(ValueError, match="made without a mask"):
        Experiment(source.spec, source.layout.root, device="cpu", initial_mask=out / "x")


def test_a_folder_cut_short_resumes_to_the_recorded_bits(tmp_path: Path) -> None:
    """A folder cut after level 1's ticket resumes to the bits of an uninterrupted run."""
    name = "lenet_layerwise_init_iterative"
    whole = folder_digest(run_spec(name, tmp_path / "whole").layout.root)
    exp = run_spec(name, tmp_path / name)
    root = exp.layout.root
    for path in (exp.layout.summary(1), exp.layout.run_metrics(1, "random_prune")):
        path.unlink()
    for path in sorted((root / "levels" / "002").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "levels" / "002").rmdir()
    run_spec(name, root)
    assert folder_digest(root) == whole
