"""A researcher's first hour (issue 15): what a user runs and reads, checked as they see it.

Local `lth run` (errors worded for people, strict types, short budgets, nothing written for a
bad start, strict JSON, progress lines, the table's lower bounds), tickets in a user's own
PyTorch loop. The service side (API details, ETA, filters, resume, the client commands) is in
tests/test_first_hour_service.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app as lth

SPEC: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": {
        "name": "synthetic",
        "validation_size": 40,
        "synthetic": {"input_shape": [1, 8, 8], "train_size": 240, "test_size": 40},
    },
    "training": {"iterations": 30, "eval_every": 10, "batch_size": 20},
    "pruning": {"levels": 2},
}


def _lth(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lth, list(args))
    return result.exit_code, result.output


@pytest.fixture(autouse=True, scope="module")
def _no_figures() -> Any:
    """`lth run`'s figures are tested elsewhere (tests/test_web_api.py); here they would only
    cost seconds per run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cli.commands.run.write_plots", lambda out, names=(): None)
        yield


def _spec_file(tmp_path: Path, spec: dict[str, Any] | None = None, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec if spec is not None else SPEC))
    return path


def _no_internals(out: str) -> None:
    """What a user should never have to read."""
    for noise in ("Traceback", "errors.pydantic.dev", "input_value", "Field required"):
        assert noise not in out, out


# ------------------------------------------------------------------ errors that help


def test_a_wrong_model_name_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    code, out = _lth("run", str(_spec_file(tmp_path, {"model": "resnet"})), "-o", "o")
    assert code == 2
    _no_internals(out)
    assert "invalid spec (1 problem):" in out
    assert "model: 'resnet' is not one of the allowed values: lenet_300_100" in out
    assert "did you mean 'resnet18'?" in out
    assert "training" not in out and "pruning" not in out  # no spurious "required"
    assert not (Path.cwd() / "o").exists()


def test_typos_and_coerced_types_are_named_and_set_errors_are_blamed_on_set(
    tmp_path: Path,
) -> None:
    spec = json.loads(json.dumps(SPEC))
    spec["training"]["iteratons"] = 5
    spec["training"]["learning_rate"] = "0.01"
    spec["pruning"]["levels"] = True
    spec_file = _spec_file(tmp_path, spec)
    code, out = _lth(
        "run", str(spec_file), "--set", "training.batch_size=big", "-o", str(tmp_path / "o")
    )
    assert code == 2
    _no_internals(out)
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "invalid spec (4 problems):"
    assert (
        f"training.iteratons: unknown field; did you mean 'iterations'?  [in {spec_file}]" in lines
    )
    assert (
        "training.learning_rate: must be a number, got a string '0.01' (write 0.01 without "
        f"quotes)  [in {spec_file}]" in lines
    )
    assert f"pruning.levels: must be a whole number, got a boolean true  [in {spec_file}]" in lines
    assert (
        "training.batch_size: must be a whole number, got a string 'big'  "
        "[from --set training.batch_size=big]" in lines
    )
    assert not (tmp_path / "o").exists()


def test_a_field_in_the_wrong_section_points_to_the_right_one(tmp_path: Path) -> None:
    code, out = _lth("run", str(_spec_file(tmp_path, {**SPEC, "iterations": 10})), "-o", "o")
    assert code == 2
    assert "iterations: unknown field here; did you mean 'training.iterations'?" in out


# ------------------------------------------------------------------ short budgets


def test_budget_dependent_defaults_adapt_to_a_short_run_and_say_so() -> None:
    from lth_core.spec import parse_spec, short_budget

    data = {"model": "resnet18", "training": {"iterations": 100}}
    spec = parse_spec(data)  # was: "every lr_milestones entry must lie strictly between ..."
    assert spec.training.lr_milestones == [67, 83]  # 20K and 25K of 30K, the same fractions
    (note,) = short_budget.notes(data)
    assert "the paper's [20000, 25000] (of 30000 iterations) scaled to [67, 83]" in note
    # A value the user wrote is never changed: its error names it and the budget.
    with pytest.raises(ValueError, match=r"lr_milestones \[20000\] lie outside the training"):
        parse_spec({"model": "resnet18", "training": {"iterations": 100, "lr_milestones": [20000]}})


def test_lth_run_on_a_short_budget_prints_how_defaults_were_adapted(tmp_path: Path) -> None:
    spec = json.loads(json.dumps(SPEC))
    del spec["training"]["eval_every"]  # the default 100 exceeds the 30 iterations
    del spec["dataset"]["validation_size"]  # the default 5000 exceeds the 240 examples
    spec["pruning"]["levels"] = 0
    out_dir = tmp_path / "o"
    code, out = _lth("run", str(_spec_file(tmp_path, spec)), "-o", str(out_dir), "--quiet")
    assert code == 0, out
    assert "note: training.eval_every: the default 100 is more than iterations 30" in out
    assert "note: dataset.validation_size: the default 5000 does not fit" in out
    written = json.loads((out_dir / "spec.json").read_text())
    assert written["training"]["eval_every"] == 30 and written["dataset"]["validation_size"] == 24


# ------------------------------------------------------------------ nothing half-written


@pytest.mark.parametrize("content", [None, b"abc"], ids=["missing", "corrupt"])
def test_a_bad_mask_file_is_one_line_and_writes_nothing(
    tmp_path: Path, content: bytes | None
) -> None:
    mask = tmp_path / "mask.safetensors"
    if content is not None:
        mask.write_bytes(content)
    out_dir = tmp_path / "o"
    code, out = _lth("run", str(_spec_file(tmp_path)), "--mask", str(mask), "-o", str(out_dir))
    assert code == 1
    _no_internals(out)
    expected = "no such file" if content is None else "not a safetensors mask file"
    assert out.strip().startswith(f"error: --mask {mask}: {expected}"), out
    assert len(out.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_unavailable_data_fails_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torchvision = pytest.importorskip("torchvision")

    def offline(*args: Any, **kwargs: Any) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    spec = {"model": "conv2", "dataset": {"name": "cifar10", "root": str(tmp_path / "data")}}
    out_dir = tmp_path / "o"
    code, out = _lth("run", str(_spec_file(tmp_path, spec)), "-o", str(out_dir))
    assert code == 1
    _no_internals(out)
    assert "error: dataset 'cifar10' not found" in out and "could not be downloaded" in out
    assert not out_dir.exists()  # no spec.json, init.safetensors or level 0 mask


def test_a_failed_start_leaves_an_existing_folder_as_it_was(tmp_path: Path) -> None:
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    code, out = _lth("run", str(_spec_file(tmp_path)), "--mask", "nope", "-o", str(out_dir))
    assert code == 1 and "error: --mask nope: no such file" in out
    assert [p.name for p in out_dir.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------ a run, read as a user


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One tiny `lth run` (non-tty: progress as lines), then the same command again."""
    tmp = tmp_path_factory.mktemp("run")
    spec = json.loads(json.dumps(SPEC))
    spec["controls"] = ["random_reinit"]
    spec_file = _spec_file(tmp, spec)
    out_dir = tmp / "o"
    code, first = _lth("run", str(spec_file), "-o", str(out_dir), "--device", "cpu")
    assert code == 0, first
    code, again = _lth("run", str(spec_file), "-o", str(out_dir), "--device", "cpu")
    assert code == 0, again
    return out_dir, first, again


def test_run_files_are_strict_json(local_run: tuple[Path, str, str]) -> None:
    out_dir, _, _ = local_run

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    files = list(out_dir.rglob("*.json"))
    assert len(files) >= 7
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)  # NaN, Infinity refused
    ticket_run = json.loads((out_dir / "levels/000/runs/ticket.json").read_text())
    assert ticket_run["curve"][0]["train_loss"] is None  # nothing trained yet: null, not NaN
    assert all(math.isfinite(p["val_loss"]) for p in ticket_run["curve"])


def test_progress_without_a_terminal_prints_lines_and_ends_in_the_final_state(
    local_run: tuple[Path, str, str],
) -> None:
    _, first, again = local_run
    lines = first.splitlines()
    assert lines[0] == "levels 0/3 finished"
    assert any(line.startswith("level 0/2 ticket  iteration 0/30") for line in lines)
    assert any(line.startswith("level 2/2 ") and "iteration 30/30" in line for line in lines)
    assert any("it/s  level ETA " in line and "  ETA " in line for line in lines)
    assert "levels 3/3 finished: done" in lines
    # Resumed with nothing left: the final state at once, no stale iteration bar.
    assert "levels 3/3 finished" in again and "iteration 0/" not in again


def test_the_table_marks_an_early_stop_at_the_last_evaluation_as_a_lower_bound(
    local_run: tuple[Path, str, str],
) -> None:
    out_dir, first, _ = local_run
    summaries = [
        json.loads((out_dir / f"levels/{lv:03d}/summary.json").read_text()) for lv in range(3)
    ]
    at_end = [s["level"] for s in summaries if s["early_stop_iteration"] == 30]
    if at_end:
        assert ">=30" in first
        assert "stopped at the last evaluation, still improving (a lower bound)" in first
    from rich.console import Console

    from cli.render import level_table

    rows = [
        {**summaries[0], "early_stop_iteration": 30},
        {**summaries[1], "early_stop_iteration": 10},
    ]
    console = Console(width=120, record=True)
    console.print(level_table(rows, 0, iterations=30, running=True, levels=3))
    text = console.export_text()
    assert ">=30" in text and " 10 " in text
    assert "so far (2 of 3 levels; still running)" in text
    assert "* winning ticket so far: level 0" in text


def test_a_stacked_level_reports_all_its_members(tmp_path: Path) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec
    from worker.progress import ProgressWriter

    events: list[Any] = []
    spec = parse_spec({**SPEC, "pruning": {"levels": 1}})
    experiment = Experiment(spec, tmp_path / "o", device="cpu", progress=events.append)
    experiment.train_runs(0)
    experiment.finish_level(0)
    events.clear()
    experiment.train_runs(1, stack=True)
    assert {e.label for e in events} == {"ticket+random_reinit"}
    written: list[dict[str, Any]] = []
    writer = ProgressWriter(written.append, levels=2, min_interval=0.0)
    writer.plan = experiment
    for event in events:
        writer(event)
    assert written[0]["kind"] == "ticket+random_reinit"
    assert written[0]["kinds"] == ["ticket", "random_reinit"]
    assert written[-1]["iteration"] == 30 and written[-1]["eta_seconds"] is not None


# ------------------------------------------------------------------ tickets in your own loop


def test_a_ticket_trains_in_a_users_own_model_and_loop(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from lth_core.tickets import load_ticket

    spec = {
        "model": "lenet_300_100",
        "dataset": {"name": "fashion_mnist", "validation_size": 100, "train_subset": 200},
        "training": {"iterations": 10, "eval_every": 10},
        "pruning": {"levels": 1},
    }
    out_dir = tmp_path / "o"
    code, out = _lth("run", str(_spec_file(tmp_path, spec)), "-o", str(out_dir), "--quiet")
    assert code == 0, out
    ticket = load_ticket(out_dir / "ticket.safetensors")
    assert ticket.model == "lenet_300_100" and ticket.dataset == "fashion_mnist"
    assert ticket.mean == pytest.approx((0.2860,)) and ticket.std == pytest.approx((0.3530,))

    # The user's own LeNet: same layers, other names.
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip
    with pytest.raises(KeyError, match=r"name_map=\{'fc1.bias': '1.bias'"):
        ticket.apply(model)  # the error proposes the map
    names = {"fc1": "1", "fc2": "3", "out": "5"}
    handle = ticket.apply(
        model, {n: f"{names[n.split('.')[0]]}.{n.split('.')[1]}" for n in ticket.init}
    )
    pruned = ~ticket.masks["fc1.weight"]
    assert bool(pruned.any()) and bool((model[1].weight[pruned] == 0).all())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        x = ticket.normalize(torch.rand(16, 1, 28, 28))
        loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (16,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    handle.remove()
    assert bool((model[1].weight[pruned] == 0).all())
    assert bool((model[1].weight[~pruned] != 0).any())
    assert not model[1]._forward_pre_hooks  # a plain module again
