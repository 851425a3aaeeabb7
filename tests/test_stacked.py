"""Stacked training (lth_core.train.stacked) equals training the members one by one, to float tolerance."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from lth_core.experiment import Experiment
from lth_core.nn.data import load_splits
from lth_core.nn.models import build_model
from lth_core.spec import parse_spec
from lth_core.train.stacked import should_stack, train_stacked, why_not_stackable
from lth_core.train.training import RunHooks, train

CURVE_FIELDS = ("train_loss", "val_loss", "val_accuracy", "test_accuracy")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spec(model: str, shape: list[int], **training: object):
    return parse_spec(
        {
            "model": model,
            "dataset": {
                "name": "synthetic",
                "validation_size": 60,
                "synthetic": {"input_shape": shape, "train_size": 300, "test_size": 60},
            },
            "training": {"iterations": 24, "eval_every": 8, "batch_size": 20, **training},
            "pruning": {"levels": 2},
        }
    )


def _members(model: str, shape: list[int], k: int):
    models, masks = [], []
    for i in range(k):
        m = build_model(model, tuple(shape), 10, seed=i)
        g = torch.Generator().manual_seed(100 + i)
        masks.append(
            {n: torch.rand(m.state_dict()[n].shape, generator=g) > 0.5 for n in m.weight_kinds()}
        )
        models.append(m)
    return models, masks


def _assert_close_runs(solo: dict, stacked: dict) -> None:
    assert len(solo["curve"]) == len(stacked["curve"])
    for a, b in zip(solo["curve"], stacked["curve"], strict=True):
        assert a["iteration"] == b["iteration"]
        for field in CURVE_FIELDS:
            x, y = a[field], b[field]
            if x is None or math.isnan(x):  # NaN in memory, null in a (strict JSON) run file
                assert y is None or math.isnan(y)
            else:
                assert y == pytest.approx(x, abs=1e-4)


@pytest.mark.parametrize(
    ("model", "shape", "seeds"),
    [
        ("lenet_300_100", [1, 12, 12], [7, 7, 7]),  # one level: members share the batches
        ("lenet_300_100", [1, 12, 12], [7, 8]),  # seeds: each member its own batches
        ("conv2", [3, 8, 8], [7, 7]),
    ],
)
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_stacked_equals_one_by_one(model, shape, seeds, optimizer):
    extra = {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-3}
    budget = {"iterations": 8, "eval_every": 4} if model == "conv2" else {}
    spec = _spec(
        model, shape, optimizer=optimizer, **budget, **(extra if optimizer == "sgd" else {})
    )
    splits = load_splits(spec.dataset)
    k = len(seeds)

    solo_models, masks = _members(model, shape, k)
    solo = [
        train(m, mk, splits, spec.training, augment=False, start_iteration=0, data_seed=s,
              augment_seed=0, hooks=RunHooks())
        for m, mk, s in zip(solo_models, masks, seeds, strict=True)
    ]  # fmt: skip
    stacked_models, masks2 = _members(model, shape, k)
    events: list[tuple[int, int]] = []
    hooks = [
        RunHooks(progress=lambda it, rec, i=i: events.append((i, it)) if rec else None)
        for i in range(k)
    ]
    stacked = train_stacked(
        stacked_models, masks2, splits, spec.training, start_iteration=0, data_seeds=seeds,
        hooks=hooks,
    )  # fmt: skip

    for a, b in zip(solo, stacked, strict=True):
        _assert_close_runs(a, b)
    for m_solo, m_stacked, mask in zip(solo_models, stacked_models, masks2, strict=True):
        for (name, p), q in zip(
            m_solo.state_dict().items(), m_stacked.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(q, p, atol=2e-5, rtol=1e-4)
            if name in mask:
                assert bool((q[~mask[name]] == 0).all()), f"{name}: pruned weights moved"
    points = range(0, spec.training.iterations + 1, spec.training.eval_every)
    assert sorted(events) == sorted((i, it) for i in range(k) for it in points)


def test_stacking_rule():
    spec = _spec("lenet_300_100", [1, 12, 12])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert should_stack("lenet_300_100", spec.training, False, cpu, 2, threads=2)
    assert not should_stack("lenet_300_100", spec.training, False, cpu, 2, threads=1)
    assert not should_stack("conv2", spec.training, False, cpu, 2, threads=2)  # vmap: slower
    assert should_stack("conv2", spec.training, False, cuda, 2)
    assert should_stack("lenet_300_100", spec.training, False, cuda, 2)
    assert not should_stack("lenet_300_100", spec.training, False, cuda, 1)
    assert not should_stack("vgg19", spec.training, False, cuda, 2)
    assert not should_stack("conv2", spec.training, True, cuda, 2)
    never = _spec("lenet_300_100", [1, 12, 12], stack_runs="never")
    assert not should_stack("lenet_300_100", never.training, False, cuda, 2)
    dropout = _spec("lenet_300_100", [1, 12, 12], dropout=0.5)
    assert why_not_stackable("lenet_300_100", dropout.training, False) is not None


def test_experiment_train_runs_writes_what_train_run_writes(tmp_path):
    spec = _spec("lenet_300_100", [1, 12, 12], eval_every=12)
    solo = Experiment(spec, tmp_path / "solo", device="cpu")
    both = Experiment(spec, tmp_path / "stacked", device="cpu")
    for exp, stack in ((solo, False), (both, True)):
        exp.prepare_level(0)
        exp.train_runs(0, stack=stack)
        exp.finish_level(0)
        exp.prepare_level(1)
        runs = exp.train_runs(1, stack=stack)
        assert [r["kind"] for r in runs] == ["ticket", "random_reinit"]
        exp.finish_level(1)
    for kind in ("ticket", "random_reinit"):
        a = solo.layout.run_metrics(1, kind)
        b = both.layout.run_metrics(1, kind)
        assert a.is_file() and b.is_file()
        ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
        assert set(ra) == set(rb)
        assert ra["weights_remaining"] == rb["weights_remaining"]
        _assert_close_runs(ra, rb)
    assert both.layout.trained_weights(1).is_file()
    assert both.layout.summary(1).is_file()
    assert solo.pending() == both.pending() == [(2, "ticket"), (2, "random_reinit")]


def test_stacked_level_resumes_to_the_same_bits(tmp_path):
    """A stacked level cut after one member finished retrains the whole stack on resume."""
    torch.set_num_threads(2)  # a CPU stacks LeNet with two threads or more (one_torch_thread
    # restores the count afterwards)
    spec = _spec("lenet_300_100", [1, 12, 12], eval_every=12)
    reference = Experiment(spec, tmp_path / "reference", device="cpu")
    assert reference.stacks_level(1) and not reference.stacks_level(0)
    reference.run()

    cut = Experiment(spec, tmp_path / "cut", device="cpu")
    for level in (0, 1):
        cut.prepare_level(level)
        cut.train_runs(level)
        cut.finish_level(level)
    # As if killed after the stack trained but before the control's metrics were written.
    cut.layout.run_metrics(1, "random_reinit").unlink()
    cut.layout.summary(1).unlink()
    ticket_before = cut.layout.run_metrics(1, "ticket").read_bytes()
    resumed = Experiment(spec, tmp_path / "cut", device="cpu")
    assert resumed.pending()[0] == (1, "random_reinit")
    assert [r["kind"] for r in resumed.train_runs(1)] == ["random_reinit"]
    assert resumed.layout.run_metrics(1, "ticket").read_bytes() == ticket_before
    resumed.run()

    def without_seconds(exp: Experiment) -> str:
        runs = [
            {k: v for k, v in json.loads(exp.layout.run_metrics(lv, kind).read_text()).items()
             if k != "seconds"}
            for lv, kind in ((1, "ticket"), (1, "random_reinit"), (2, "random_reinit"))
        ]  # fmt: skip
        return json.dumps(runs, sort_keys=True)

    assert without_seconds(reference) == without_seconds(resumed)
    for level in (1, 2):
        # The tensors (the files' metadata carries each folder's own provenance).
        want, got = load_file(reference.layout.mask(level)), load_file(resumed.layout.mask(level))
        assert want.keys() == got.keys() and all(torch.equal(want[n], got[n]) for n in want)
