"""Pruning at initialization (SNIP, GraSP, SynFlow, magnitude-at-init) as controls: each
score against a computation by hand or by torch.autograd on a toy network, exact counts,
untouched biases, Frankle et al. 2021's ablations, spec errors, run ids, one experiment end to
end (and through the API) and the comparison figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from engine_helpers import tiny_spec
from pydantic import ValidationError
from torch import nn

from lth_core.controls.at_init import keep_top
from lth_core.controls.grasp import TEMPERATURE, GraSP
from lth_core.controls.magnitude_init import MagnitudeInit
from lth_core.controls.snip import Snip
from lth_core.controls.synflow import SynFlow, schedule
from lth_core.experiment import Experiment
from lth_core.registry.controls import draws
from lth_core.runs import RUN_ID_PATTERN, is_run_id, parse_run_id, split_kind
from lth_core.spec.errors import problems
from lth_core.storage.files import get_tensors
from lth_core.storage.layout import Keys

pytest_plugins = ("test_service_support",)

PRUNED = ["l1.weight", "l2.weight"]


class Toy(nn.Module):
    """Two linear layers with fixed weights (the second also fixed biases)."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.l1 = nn.Linear(4, 5, bias=bias)
        self.l2 = nn.Linear(5, 3, bias=bias)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x.flatten(1))))


class Chain(nn.Module):
    """A linear chain without biases (SynFlow's conservation holds exactly)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (nn.Linear(i, o, bias=False) for i, o in ((4, 6), (6, 5), (5, 3)))
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x.flatten(1))))


X = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1))
Y = torch.tensor([0, 1, 2, 0, 1, 2])


class Context:
    """A RunContext over a toy model and a fixed batch (None: data-free, asking fails)."""

    def __init__(self, make=Toy, variant: str | None = None, data: bool = True) -> None:
        self.make, self.variant, self.data = make, variant, data
        self.theta0 = make().state_dict()
        self.names = [n for n in self.theta0 if n.endswith("weight")]
        self.device = torch.device("cpu")
        self.input_shape = (1, 2, 2)

    def seed_for(self, *parts: object) -> int:
        return abs(hash(("toy", *map(str, parts)))) % 2**31

    def build(self, seed: int | None) -> nn.Module:
        model = self.make()
        if seed is not None:
            torch.manual_seed(seed)
            for p in model.parameters():
                nn.init.normal_(p)
        return model

    def prunable_weights(self) -> list[str]:
        return self.names

    def pruned_weights(self) -> list[str]:
        return self.names

    @property
    def base_mask(self) -> dict[str, torch.Tensor]:
        return {n: torch.ones_like(self.theta0[n], dtype=torch.bool) for n in self.names}

    def training_examples(self, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.data:
            raise AssertionError("a data-free method asked for data")
        return X, Y


def _model(context: Context) -> nn.Module:
    model = context.make()
    model.load_state_dict(context.theta0)
    return model.eval()


def _ticket_mask(context: Context, keep: dict[str, int]) -> dict[str, torch.Tensor]:
    out = {}
    for name in context.names:
        m = torch.zeros(context.theta0[name].numel(), dtype=torch.bool)
        m[: keep[name]] = True
        out[name] = m.view_as(context.theta0[name])
    return out


# ----------------------------------------------------------------------------- the scores


def test_snip_scores_are_the_gradient_times_the_weight_by_hand() -> None:
    context = Context()
    model = _model(context)
    scores = Snip().scores(context, 1, model, PRUNED)
    # dL/dW by hand for logits = W2 relu(W1 x + b1) + b2 and the mean cross-entropy.
    w1, b1, w2, b2 = (context.theta0[k] for k in ("l1.weight", "l1.bias", "l2.weight", "l2.bias"))
    x = X.flatten(1)
    z = x @ w1.T + b1
    h = z.clamp(min=0)
    logits = h @ w2.T + b2
    d_logits = (logits.softmax(1) - F.one_hot(Y, 3)) / len(Y)
    d_w2 = d_logits.T @ h
    d_w1 = ((d_logits @ w2) * (z > 0)).T @ x
    torch.testing.assert_close(scores["l2.weight"], (d_w2 * w2).abs())
    torch.testing.assert_close(scores["l1.weight"], (d_w1 * w1).abs())


def test_grasp_scores_are_theta_times_hessian_gradient_by_autograd_hvp() -> None:
    context = Context()
    model = _model(context)
    scores = GraSP().scores(context, 1, model, PRUNED)
    flat0 = torch.cat([context.theta0[n].flatten() for n in PRUNED])
    sizes = [context.theta0[n].numel() for n in PRUNED]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        w1, w2 = flat.split(sizes)
        z = F.linear(X.flatten(1), w1.view(5, 4), context.theta0["l1.bias"])
        logits = F.linear(torch.relu(z), w2.view(3, 5), context.theta0["l2.bias"])
        return F.cross_entropy(logits / TEMPERATURE, Y)

    leaf = flat0.detach().requires_grad_()
    g = torch.autograd.grad(loss(leaf), leaf)[0]
    _, hg = torch.autograd.functional.hvp(loss, flat0.detach(), g.detach())
    expected = (flat0.detach() * hg).split(sizes)
    torch.testing.assert_close(scores["l1.weight"].flatten(), expected[0])
    torch.testing.assert_close(scores["l2.weight"].flatten(), expected[1])
    # Keeping the highest theta*Hg is removing the highest -theta*Hg (Wang et al.).
    candidates = context.base_mask
    kept = keep_top(scores, candidates, 20)
    removed = torch.cat([(-scores[n]).flatten()[~kept[n].flatten()] for n in PRUNED])
    survived = torch.cat([(-scores[n]).flatten()[kept[n].flatten()] for n in PRUNED])
    assert removed.min() >= survived.max()


def test_synflow_conserves_the_flow_per_layer_uses_no_data_and_reaches_the_count() -> None:
    context = Context(Chain, data=False)
    names = ["a.weight", "b.weight", "c.weight"]
    context.names = names
    model = _model(context)
    scores = SynFlow().scores(context, 1, model, names)
    w = {n: context.theta0[n].double().abs() for n in names}
    r = (
        torch.ones(1, 3, dtype=torch.float64) @ w["c.weight"] @ w["b.weight"] @ w["a.weight"]
    ).sum()
    for n in names:
        assert math.isclose(float(scores[n].sum()), float(r), rel_tol=1e-12)
    # 100 rounds of the exponential schedule end exactly on the count ...
    counts = schedule(74, 7)
    assert len(counts) == 100 and counts[-1] == 7 and counts == sorted(counts, reverse=True)
    ticket = _ticket_mask(context, {"a.weight": 3, "b.weight": 2, "c.weight": 2})
    mask = SynFlow().mask(context, 1, ticket)
    assert sum(int(m.sum()) for m in mask.values()) == 7
    # ... and iterating changes the mask: one shot on the first scores empties a layer.
    one_shot = keep_top(scores, context.base_mask, 7)
    assert any(not torch.equal(mask[n], one_shot[n]) for n in names)
    assert all(int(mask[n].sum()) > 0 for n in names)


def test_magnitude_init_keeps_the_largest_initial_weights() -> None:
    context = Context()
    scores = MagnitudeInit().scores(context, 1, _model(context), PRUNED)
    for n in PRUNED:
        torch.testing.assert_close(scores[n], context.theta0[n].abs())


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("method", [Snip(), GraSP(), SynFlow(), MagnitudeInit()])
def test_every_method_hits_the_ticket_count_and_leaves_other_weights_alone(method) -> None:
    context = Context()
    context.pruned_weights = lambda: ["l1.weight"]  # l2 at rate 0: not pruned by the ticket
    ticket = _ticket_mask(context, {"l1.weight": 7, "l2.weight": 15})
    mask = method.mask(context, 2, ticket)
    assert set(mask) == set(ticket)  # biases are never masked
    assert int(mask["l1.weight"].sum()) == 7
    assert torch.equal(mask["l2.weight"], ticket["l2.weight"])
    assert method.start(context, 2, lambda: {})["l1.bias"] is context.theta0["l1.bias"]


def test_ablations_shuffle_invert_and_reinit() -> None:
    keep = {"l1.weight": 10, "l2.weight": 5}
    plain = Snip().mask(Context(), 1, _ticket_mask(Context(), keep))
    shuffle = Snip().mask(Context(variant="shuffle"), 1, _ticket_mask(Context(), keep))
    for n in PRUNED:  # the same per-layer counts, other places
        assert int(shuffle[n].sum()) == int(plain[n].sum())
    assert any(not torch.equal(shuffle[n], plain[n]) for n in PRUNED)
    # invert keeps the lowest scores at the same count: at half the weights, the complement.
    context = Context()
    magnitudes = MagnitudeInit().scores(context, 1, _model(context), ["l1.weight"])  # no ties
    l1 = {"l1.weight": context.base_mask["l1.weight"]}
    top, low = keep_top(magnitudes, l1, 10), keep_top(magnitudes, l1, 10, invert=True)
    assert torch.equal(low["l1.weight"], ~top["l1.weight"])
    scores = Snip().scores(context, 1, _model(context), PRUNED)
    inverted = Snip().mask(Context(variant="invert"), 1, _ticket_mask(Context(), keep))
    assert sum(int(inverted[n].sum()) for n in PRUNED) == 15
    low15 = keep_top(scores, context.base_mask, 15, invert=True)
    assert all(torch.equal(inverted[n], low15[n]) for n in PRUNED)
    # reinit: the plain mask, fresh weights.
    reinit = Context(variant="reinit")
    assert all(
        torch.equal(Snip().mask(reinit, 1, _ticket_mask(reinit, keep))[n], plain[n]) for n in PRUNED
    )
    start = Snip().start(reinit, 1, lambda: {})
    assert not torch.equal(start["l1.weight"], reinit.theta0["l1.weight"])


# ----------------------------------------------------------------------------- spec, run ids


def _error(**sections: Any) -> str:
    with pytest.raises(ValidationError) as info:
        tiny_spec(**sections)
    lines = [p.line for p in problems(info.value)]
    assert len(lines) == 1, lines
    return lines[0]


def test_control_options_errors_name_what_is_allowed() -> None:
    line = _error(controls=["snip"], control_options={"snp": {"ablation": "shuffle"}})
    assert "'snp' is not among controls" in line and "snip" in line
    line = _error(controls=["snip"], control_options={"snip": {"ablaton": "shuffle"}})
    assert "unknown option 'ablaton'" in line and "'ablation'" in line
    line = _error(controls=["snip"], control_options={"snip": {"ablation": "shufle"}})
    assert "'shuffle', 'reinit', 'invert'" in line
    line = _error(controls=["random_reinit"], control_options={"random_reinit": {"x": 1}})
    assert "random_reinit takes no options" in line
    line = _error(controls=["grasp"], reset={"mode": "rewind", "rewind_iteration": 10})
    assert "grasp cannot apply" in line and "reset.mode 'init'" in line


def test_ablated_runs_have_ids_of_their_own() -> None:
    assert parse_run_id("snip.shuffle.t1.r2") == ("snip.shuffle", 1, 2)
    assert parse_run_id("ticket.t3") == ("ticket", 3, 0)
    assert split_kind("synflow.invert") == ("synflow", "invert") and split_kind("snip") == (
        "snip",
        None,
    )
    assert is_run_id("snip.reinit.r1") and not is_run_id("snip.shuffle.x.t1")
    assert not is_run_id("ticket.json") and not is_run_id("snip.flip")
    import re

    assert re.fullmatch(RUN_ID_PATTERN, "synflow.shuffle.t2")
    spec = tiny_spec(
        controls=["snip", "synflow"],
        control_options={"synflow": {"ablation": ["shuffle", "invert"]}},
        control_repeats=2,
    )
    assert spec.runs_at_level(1) == [
        "ticket",
        "snip",
        "snip.r1",
        "synflow",
        "synflow.shuffle",
        "synflow.shuffle.r1",
        "synflow.invert",
    ]
    assert (
        draws("synflow", 3) == 1 and draws("synflow", 3, "shuffle") == 3 and draws("snip", 3) == 3
    )


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    torch.set_num_threads(1)
    spec = tiny_spec(
        controls=["random_reinit", "snip", "synflow"],
        control_options={"snip": {"ablation": "shuffle"}},
        trials=2,
        control_repeats=2,
        pruning={"levels": 1},
    )
    exp = Experiment(spec, tmp_path_factory.mktemp("pai"), device="cpu")
    exp.run()
    return exp


def test_an_experiment_trains_every_method_and_reports_it_beside_the_ticket(experiment) -> None:
    summary = experiment.summaries()[1]
    assert {"random_reinit", "snip", "snip.shuffle", "synflow"} <= set(summary["controls"])
    assert summary["stats"]["snip"]["early_stop_test_accuracy"]["n"] == 4  # 2 trials x 2 draws
    assert summary["stats"]["synflow"]["early_stop_test_accuracy"]["n"] == 2  # deterministic
    ticket = get_tensors(experiment.store, Keys.of_trial(0).mask(1))
    snip = get_tensors(experiment.store, Keys.of_trial(0).control_mask(1, "snip"))
    snip_r1 = get_tensors(experiment.store, Keys.of_trial(0).control_mask(1, "snip.r1"))
    synflow = get_tensors(experiment.store, Keys.of_trial(1).control_mask(1, "synflow.t1"))
    for mask in (snip, snip_r1, synflow):
        assert sum(int(m.sum()) for m in mask.values()) == sum(
            int(m.sum()) for m in ticket.values()
        )
    differ = [
        (ticket, snip),
        (snip, snip_r1),
        (snip, get_tensors(experiment.store, Keys.of_trial(0).control_mask(1, "synflow"))),
    ]
    for a, b in differ:
        assert any(not torch.equal(a[n], b[n]) for n in a)
    run = experiment.store.get("levels/001/runs/synflow.json")
    assert b'"mask_passes": 100' in run
    # A second plan reads the mask written (the same bits), and the decision reports it.
    plan = experiment.plan(1, "snip")
    assert all(torch.equal(plan.mask[n], snip[n]) for n in snip)
    from lth_core.results.ticket_rule import level_qualifies

    record = level_qualifies(summary, experiment.summaries()[0], tolerance=0.0)
    # Whether the ticket beats each method is a verdict with its interval, reported but not
    # required of a ticket (Frankle et al. 2021 compare; the ticket need not beat them).
    for method in ("snip", "snip.shuffle", "synflow"):
        beats = record["comparisons"][f"beats_{method}"]
        assert beats["required"] is False
        assert beats["verdict"] in ("yes", "no", "inconclusive") and len(beats["interval"]) == 2
        assert record["margins"][method]["val_accuracy"] is not None


def test_the_comparison_figure_renders(experiment, tmp_path: Path) -> None:
    from lth_core.report.figures import figure, has_points, render, source_from_store

    spec = figure("method_comparison", [source_from_store(experiment.store, "pai")])
    assert has_points(spec)
    kinds = {row["kind"] for row in spec["vconcat"][0]["data"]["values"]}
    assert {"ticket", "snip", "snip.shuffle", "synflow", "random_reinit"} <= kinds
    assert render(spec, "png").startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- the API


def test_the_api_takes_control_options_refuses_bad_ones_and_serves_every_method(
    client, settings, experiment
) -> None:
    from test_service_support import EngineRun, assert_error, finish_like_worker, submit

    bad = client.post(
        "/experiments", json=_api_spec(control_options={"snip": {"ablation": "flip"}})
    )
    error = assert_error(bad, 422)
    assert "'shuffle', 'reinit', 'invert'" in str(error)
    body = submit(client, experiment.spec.model_dump(mode="json"))
    assert body["spec"]["control_options"] == {"snip": {"ablation": "shuffle"}}
    run = EngineRun(
        Path(experiment.layout.root),
        experiment.spec.model_dump(mode="json"),
        experiment.summaries(),
    )
    finish_like_worker(settings, body["id"], run)
    level = client.get(f"/experiments/{body['id']}/levels/1/metrics").json()
    assert {"snip", "snip.shuffle.t1.r1", "synflow.t1"} <= set(level["runs"])
    figure = client.get(f"/experiments/{body['id']}/plots/method_comparison.json")
    assert figure.status_code == 200 and figure.json()["vconcat"]


def _api_spec(**changes: Any) -> dict[str, Any]:
    from test_service_support import tiny_spec as api_tiny_spec

    return api_tiny_spec(controls=["snip"], **changes)
