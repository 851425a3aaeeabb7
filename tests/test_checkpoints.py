"""Checkpoints inside a run (lth_core.train.checkpoint): a run interrupted mid-training resumes
from its latest complete checkpoint and ends with the bits of an uninterrupted run.

Each test trains a tiny synthetic experiment twice in this process (same CPU, same thread
count): once straight through, once interrupted at an evaluation (an exception raised from
the progress hook: the process "dies" there, before that evaluation's checkpoint) and then
resumed by a fresh Experiment over the same store. Everything the engine wrote is compared
bit for bit: every tensor of every safetensors file and every run's metrics and curve (all
but the wall-clock `seconds` and the `cost`, which says where the run resumed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from lth_core.experiment import Experiment, ProgressEvent
from lth_core.spec import _merge, parse_spec
from lth_core.storage.files import get_json
from lth_core.storage.layout import KEYS
from lth_core.storage.store import LocalStore
from lth_core.train.checkpoint import decode, encode

BASE: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": {
        "name": "synthetic",
        "validation_size": 40,
        "synthetic": {"input_shape": [1, 8, 8], "train_size": 240, "test_size": 40},
    },
    "training": {
        "iterations": 24,
        "eval_every": 4,
        "batch_size": 20,
        "checkpoint_every": 8,
        "stack_runs": "never",
    },
    "pruning": {"levels": 1},
    "controls": ["random_reinit"],
}

SGD = {
    "optimizer": "sgd",
    "learning_rate": 0.05,
    "momentum": 0.9,
    "weight_decay": 1e-3,
    "warmup_iterations": 4,
    "lr_milestones": [12],
}


class Killed(Exception):
    """The process dying at an evaluation (raised before that evaluation's checkpoint)."""


def spec_of(**sections: Any) -> Any:
    return parse_spec(_merge(BASE, sections))


def train(
    spec: Any,
    out: Path,
    *,
    stack: bool | None = False,
    kill_at: tuple[int, int] | None = None,
) -> list[ProgressEvent]:
    """Trains every level (stacked or not); `kill_at` (level, iteration): raise there."""
    seen: list[ProgressEvent] = []

    def progress(event: ProgressEvent) -> None:
        seen.append(event)
        if kill_at == (event.level, event.iteration) and event.record is not None:
            raise Killed

    experiment = Experiment(spec, out, device="cpu", progress=progress, checkpoint_seconds=None)
    for level in experiment.levels:
        if experiment.is_level_done(level):
            continue
        experiment.prepare_level(level)
        experiment.train_runs(level, stack=stack)
        experiment.finish_level(level)
    return seen


def assert_same_bits(got: Path, want: Path) -> None:
    tensors = sorted(p.relative_to(want) for p in want.rglob("*.safetensors"))
    assert tensors == sorted(p.relative_to(got) for p in got.rglob("*.safetensors"))
    for name in tensors:
        a, b = load_file(got / name), load_file(want / name)
        assert a.keys() == b.keys(), name
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), f"{name} {key}"
    runs = sorted(p.relative_to(want) for p in want.glob("levels/*/runs/*.json"))
    assert runs and runs == sorted(p.relative_to(got) for p in got.glob("levels/*/runs/*.json"))
    for name in runs:
        a, b = json.loads((got / name).read_text()), json.loads((want / name).read_text())
        for run in (a, b):
            run.pop("seconds"), run.pop("cost")
        # As JSON text: NaN (the loss before the first step) never equals itself.
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), name


def checkpoints(out: Path) -> list[str]:
    return [k for k in LocalStore(out).list() if "/checkpoints/" in k]


def run_cost(out: Path, level: int, kind: str) -> dict[str, Any]:
    return json.loads((out / KEYS.run_metrics(level, kind)).read_text())["cost"]


CASES = {
    "sgd_momentum_rewind_early_stop_test": {
        "training": {**SGD, "test_eval": "early_stop", "patience": 50},
        "reset": {"mode": "rewind", "rewind_iteration": 4},
    },
    "adam_dropout": {"training": {"dropout": 0.2}},
    "adam_early_bird": {"pruning": {"early_bird": {"distance": 0.5, "window": 50}}},
    "conv2_augment_sgd": {
        "model": "conv2",
        "dataset": {"augment": True, "synthetic": {"input_shape": [3, 8, 8]}},
        "training": SGD,
        "controls": [],
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_single_run_interrupted_resumes_with_the_same_bits(case: str, tmp_path: Path) -> None:
    spec = spec_of(**CASES[case])
    train(spec, tmp_path / "straight")
    assert not checkpoints(tmp_path / "straight"), "a finished run leaves no checkpoint"

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train(spec, out, kill_at=(1, 20))  # level 1's ticket; its checkpoint at 16 is written
    assert checkpoints(out) == [
        "levels/001/checkpoints/ticket/000000016.json",
        "levels/001/checkpoints/ticket/000000016.safetensors",
    ]
    seen = train(spec, out)
    resumed = [e.iteration for e in seen if e.level == 1 and e.kind == "ticket"]
    assert resumed and min(resumed) > 16, "the resumed run trains only what was left"
    assert run_cost(out, 1, "ticket")["resumed_from"] == 16
    assert not checkpoints(out)
    assert_same_bits(out, tmp_path / "straight")


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_stacked_run_interrupted_resumes_with_the_same_bits(
    optimizer: str, tmp_path: Path
) -> None:
    """Ticket and control as one stacked model: one checkpoint for both members."""
    training = SGD if optimizer == "sgd" else {}
    spec = spec_of(training={**training, "stack_runs": "auto"})
    train(spec, tmp_path / "straight", stack=True)

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train(spec, out, stack=True, kill_at=(1, 12))
    assert checkpoints(out) == [
        "levels/001/checkpoints/ticket+random_reinit/000000008.json",
        "levels/001/checkpoints/ticket+random_reinit/000000008.safetensors",
    ]
    train(spec, out, stack=True)
    assert run_cost(out, 1, "ticket")["resumed_from"] == 8
    assert run_cost(out, 1, "random_reinit")["resumed_from"] == 8
    assert not checkpoints(out)
    assert_same_bits(out, tmp_path / "straight")


def test_b_a_checkpoint_without_its_manifest_is_not_taken(tmp_path: Path, monkeypatch) -> None:
    """Killed between a checkpoint's tensors and its manifest: the one before is resumed."""
    spec = spec_of()
    train(spec, tmp_path / "straight")
    out = tmp_path / "resumed"
    real_put = LocalStore.put

    def dies_writing_the_manifest(self: LocalStore, key: str, data: bytes) -> None:
        if key.endswith("000000016.json"):
            raise Killed
        real_put(self, key, data)

    monkeypatch.setattr(LocalStore, "put", dies_writing_the_manifest)
    with pytest.raises(Killed):
        train(spec, out)
    monkeypatch.undo()
    assert checkpoints(out) == [
        "levels/000/checkpoints/ticket/000000008.json",
        "levels/000/checkpoints/ticket/000000008.safetensors",
        "levels/000/checkpoints/ticket/000000016.safetensors",
    ]
    train(spec, out)
    assert run_cost(out, 0, "ticket")["resumed_from"] == 8
    assert not checkpoints(out)
    assert_same_bits(out, tmp_path / "straight")


@pytest.mark.parametrize("damage", ["manifest", "tensors", "identity"])
def test_b_a_corrupt_checkpoint_is_ignored(damage: str, tmp_path: Path) -> None:
    """A manifest that does not parse, tensors that are not the ones the manifest names, or
    a checkpoint of another training: the run starts from the beginning."""
    spec = spec_of()
    train(spec, tmp_path / "straight")
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train(spec, out, kill_at=(0, 12))
    store = LocalStore(out)
    manifest = "levels/000/checkpoints/ticket/000000008.json"
    tensors = manifest.replace(".json", ".safetensors")
    if damage == "manifest":
        store.put(manifest, b'{"format": "lth-checkpoint/1", "iteration": 8, "tens')
    elif damage == "tensors":
        data = bytearray(store.get(tensors))
        data[-1] ^= 1
        store.put(tensors, bytes(data))  # its own digest is right; the manifest's is not
    else:
        body = get_json(store, manifest)
        body["identity"]["training"]["learning_rate"] = 0.5
        store.put(manifest, json.dumps(body).encode())
    train(spec, out)
    assert "resumed_from" not in run_cost(out, 0, "ticket")
    assert not checkpoints(out)
    assert_same_bits(out, tmp_path / "straight")


def test_c_checkpoints_are_deleted_when_the_run_and_the_level_finish(tmp_path: Path) -> None:
    spec = spec_of()
    out = tmp_path / "out"
    with pytest.raises(Killed):
        train(spec, out, kill_at=(0, 12))
    store = LocalStore(out)
    # One left by a training of the level that will not come back (stacked elsewhere).
    store.put("levels/000/checkpoints/ticket+random_reinit/000000004.json", b"{}")
    assert len(checkpoints(out)) == 3
    train(spec, out)
    assert not checkpoints(out)
    assert not (out / "levels/000/checkpoints").exists()


def test_c_time_based_checkpoints_replace_each_other(tmp_path: Path) -> None:
    """LTH_CHECKPOINT_SECONDS: with a tiny interval every evaluation checkpoints, and only the
    newest is kept."""
    spec = spec_of(training={"checkpoint_every": None})
    out = tmp_path / "out"
    written: list[list[str]] = []

    def progress(event: ProgressEvent) -> None:
        written.append(checkpoints(out))
        if event.iteration == 20 and event.record is not None:
            raise Killed

    experiment = Experiment(spec, out, device="cpu", progress=progress, checkpoint_seconds=1e-9)
    experiment.prepare_level(0)
    with pytest.raises(Killed):
        experiment.train_run(0, "ticket")
    # At each evaluation the progress hook runs before that evaluation's checkpoint.
    assert checkpoints(out) == [
        "levels/000/checkpoints/ticket/000000016.json",
        "levels/000/checkpoints/ticket/000000016.safetensors",
    ]
    assert written[-1] == checkpoints(out)


def test_a_cancelled_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """should_stop (a cancel, a lost lease) at an evaluation: the run stops there, writing no
    checkpoint of its own (a process that lost its lease writes nothing); resumed, it goes on
    from its latest checkpoint."""
    spec = spec_of()
    straight = tmp_path / "straight"
    train(spec, straight)
    out = tmp_path / "out"
    iterations: list[int] = []
    experiment = Experiment(
        spec,
        out,
        device="cpu",
        progress=lambda e: iterations.append(e.iteration),
        should_stop=lambda: bool(iterations) and iterations[-1] >= 12,
        checkpoint_seconds=None,
    )
    experiment.prepare_level(0)
    from lth_core.experiment import Cancelled

    with pytest.raises(Cancelled):
        experiment.train_run(0, "ticket")
    assert checkpoints(out)[0] == "levels/000/checkpoints/ticket/000000008.json"
    train(spec, out)
    assert run_cost(out, 0, "ticket")["resumed_from"] == 8
    assert_same_bits(out, straight)


def test_encode_keeps_every_float() -> None:
    values = [0.1, 1 / 3, float("nan"), float("inf"), -float("inf"), 5e-324, None, 7]
    back = decode(json.loads(json.dumps(encode({"v": values}), allow_nan=False)))["v"]
    assert [repr(v) for v in back] == [repr(v) for v in values]


def test_checkpoint_every_is_validated() -> None:
    with pytest.raises(
        ValueError, match=r"checkpoint_every \(6\) must be a multiple of eval_every"
    ):
        spec_of(training={"checkpoint_every": 6})
    with pytest.raises(ValueError, match="checkpoint_every"):
        spec_of(training={"checkpoint_every": 0})
    assert (
        "checkpoint_every"
        not in spec_of(training={"checkpoint_every": None}).model_dump(mode="json")["training"]
    )


def test_a_stack_with_finished_members_resumes_them_frozen(tmp_path: Path) -> None:
    """Patience finishes members of a stack one by one (they are frozen while the others go
    on): a checkpoint keeps which are frozen and at what, so the resumed stack gives the same
    bits as the uninterrupted one."""
    spec = spec_of(
        training={**SGD, "stack_runs": "auto", "patience": 1, "learning_rate": 0.3},
        control_repeats=3,
    )
    train(spec, tmp_path / "straight", stack=True)
    stops = [
        json.loads(p.read_text()).get("stopped_at")
        for p in (tmp_path / "straight").glob("levels/001/runs/*.json")
    ]
    assert len(set(stops)) > 1, f"the members should stop apart: {stops}"

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train(spec, out, stack=True, kill_at=(1, 20))
    (manifest,) = [k for k in checkpoints(out) if k.endswith(".json")]
    frozen = get_json(LocalStore(out), manifest)["members"]["frozen"]
    assert frozen, "a member is finished when the checkpoint is written"
    train(spec, out, stack=True)
    assert_same_bits(out, tmp_path / "straight")
