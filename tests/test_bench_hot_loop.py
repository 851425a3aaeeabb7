"""The hot loop's shortcuts compute exactly what the plain PyTorch way computes, bit for bit on CPU."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lth_core.nn.data import load_splits
from lth_core.nn.models import build_model
from lth_core.spec import TrainingSpec, parse_spec
from lth_core.train.training import FusedStep, MLPStep, RunHooks, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mlp_step_is_autograd_bit_for_bit():
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=3)
    params = list(model.parameters())
    step = MLPStep.for_model(model, params)
    assert step is not None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (60,), generator=g)
    loss, grads = step(x, y)
    ref_loss = F.cross_entropy(model(x), y)
    ref_grads = torch.autograd.grad(ref_loss, params)
    assert torch.equal(loss, ref_loss.detach())
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.equal(a, b)
        assert a.stride() == b.stride()


def test_mlp_step_only_where_exact():
    dropout = build_model("lenet_300_100", (1, 28, 28), 10, dropout=0.5, seed=0)
    assert MLPStep.for_model(dropout, list(dropout.parameters())) is None
    conv = build_model("conv2", (3, 8, 8), 10, seed=0)
    assert MLPStep.for_model(conv, list(conv.parameters())) is None


@pytest.mark.parametrize(
    "cfg",
    [
        {"optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 1e-4},
        {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
        {"optimizer": "sgd", "learning_rate": 0.05},
    ],
)
def test_fused_step_is_torch_optim_bit_for_bit(cfg):
    spec = TrainingSpec(batch_size=10, iterations=5, eval_every=5, **cfg)
    torch.manual_seed(0)
    a = [torch.randn(7, 5), torch.randn(5)]
    b = [t.clone() for t in a]
    for t in a:
        t.requires_grad_(True)
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(a, lr=spec.learning_rate, weight_decay=spec.weight_decay, fused=True)
    else:
        opt = torch.optim.SGD(a, lr=spec.learning_rate, momentum=spec.momentum,
                              weight_decay=spec.weight_decay, fused=True)  # fmt: skip
    mine = FusedStep(b, spec)
    for i in range(4):
        grads = [torch.randn_like(t) * (i + 1) for t in a]
        for t, gr in zip(a, grads, strict=True):
            t.grad = gr.clone()
        opt.step()
        mine.step(grads, spec.learning_rate)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.detach(), y)


def test_pruned_weights_stay_zero_and_runs_repeat():
    spec = parse_spec(
        {
            "model": "lenet_300_100",
            "dataset": {
                "name": "synthetic",
                "validation_size": 50,
                "synthetic": {"input_shape": [1, 8, 8], "train_size": 250, "test_size": 50},
            },
            "training": {"iterations": 30, "eval_every": 10, "batch_size": 20,
                         "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9,
                         "weight_decay": 1e-3, "warmup_iterations": 5, "lr_milestones": [20]},
            "pruning": {"levels": 1},
        }
    )  # fmt: skip
    splits = load_splits(spec.dataset)
    results = []
    for _ in range(2):
        model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
        g = torch.Generator().manual_seed(1)
        mask = {n: torch.rand(model.state_dict()[n].shape, generator=g) > 0.7
                for n in model.weight_kinds()}  # fmt: skip
        mask["out.weight"][:] = True  # an all-ones mask is skipped by the loop
        out = train(model, mask, splits, spec.training, augment=False, start_iteration=0,
                    data_seed=4, augment_seed=0, hooks=RunHooks())  # fmt: skip
        for name, m in mask.items():
            assert bool((model.state_dict()[name][~m] == 0).all())
        results.append((out["curve"], [p.detach().clone() for p in model.parameters()]))
    (c1, p1), (c2, p2) = results
    assert repr(c1) == repr(c2)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
