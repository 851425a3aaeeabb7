"""Every mask and ticket file says where it came from (issue 25): model, dataset, experiment,
level, trial, run, weights remaining, the spec's digest and the version that wrote it; and a
mask given to the wrong model is refused naming whose mask it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from test_service_support import TINY_SPEC, EngineRun, tiny_spec
from typer.testing import CliRunner

from cli.main import app as lth
from lth_core.storage import provenance
from lth_core.storage.store import LocalStore

pytest_plugins = ("test_service_support",)


def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def test_a_level_mask_carries_its_provenance(engine_run: EngineRun) -> None:
    meta = _meta(engine_run.out_dir / "levels" / "001" / "mask.safetensors")
    kept = engine_run.summaries[1]["weights_remaining"]
    assert meta["provenance_format"] == provenance.PROVENANCE_FORMAT
    assert (meta["kind"], meta["model"], meta["dataset"]) == ("mask", "lenet_300_100", "synthetic")
    assert (meta["level"], meta["trial"]) == ("1", "0")
    assert (meta["run_level"], meta["run_id"]) == ("0", "ticket")  # pruned from level 0's ticket
    assert float(meta["weights_remaining"]) == pytest.approx(kept, rel=1e-5)
    assert meta["spec_sha256"] == provenance.spec_sha256(engine_run.spec)
    assert meta["lth_version"] == provenance.lth_version() != ""
    assert "experiment_id" not in meta  # a local run: no service id
    level0 = _meta(engine_run.out_dir / "levels" / "000" / "mask.safetensors")
    assert level0["level"] == "0" and "run_id" not in level0  # made, not pruned
    assert float(level0["weights_remaining"]) == 1.0


def test_the_ticket_file_carries_its_provenance(engine_run: EngineRun) -> None:
    meta = _meta(engine_run.out_dir / "ticket.safetensors")
    assert meta["format"] == "lth-ticket-v1" and meta["kind"] == "ticket"
    assert (meta["run_level"], meta["run_id"]) == (meta["level"], "ticket")
    assert json.loads(meta["spec"]) == engine_run.spec
    assert meta["spec_sha256"] == provenance.spec_sha256(engine_run.spec)
    level = int(meta["level"])
    assert float(meta["weights_remaining"]) == pytest.approx(
        engine_run.summaries[level]["weights_remaining"], rel=1e-5
    )


def test_a_service_experiments_files_name_it(tmp_path: Path, one_torch_thread: None) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec
    from store.artifacts import experiment_store
    from store.settings import Settings

    settings = Settings(data_dir=tmp_path)
    experiment_id = "ab" * 16
    store = experiment_store(settings, experiment_id)
    assert store.experiment_id == experiment_id
    assert store.scoped("levels").experiment_id == experiment_id
    spec = tiny_spec(pruning={"levels": 1}, training={"iterations": 20, "eval_every": 10})
    Experiment(parse_spec(spec), store, device="cpu").run()
    folder = tmp_path / "experiments" / experiment_id
    for path in (folder / "levels" / "001" / "mask.safetensors", folder / "ticket.safetensors"):
        meta = _meta(path)
        assert meta["experiment_id"] == experiment_id
        assert provenance.describe(meta).endswith(f"experiment {experiment_id[:8]})")


def test_a_mask_for_another_model_is_refused_saying_whose_it_is(
    engine_run: EngineRun, tmp_path: Path
) -> None:
    spec = {
        "model": "conv2",
        "dataset": {
            "name": "synthetic",
            "validation_size": 20,
            "synthetic": {"input_shape": [3, 8, 8], "train_size": 100, "test_size": 20},
        },
        "training": {"iterations": 10, "eval_every": 5},
        "pruning": {"levels": 1},
    }
    spec_file = tmp_path / "conv2.json"
    spec_file.write_text(json.dumps(spec))
    mask = engine_run.out_dir / "levels" / "001" / "mask.safetensors"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        lth, ["run", str(spec_file), "--mask", str(mask), "-o", str(out), "--device", "cpu"]
    )
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    kept = 100 * engine_run.summaries[1]["weights_remaining"]
    assert (
        f"--mask {mask}: this is lenet_300_100's mask (level 1, {kept:.1f}% of weights, "
        "trained on synthetic), your spec's model is conv2"
    ) in text
    assert "missing" not in text
    assert not out.exists()  # refused before anything was written


def test_a_file_without_provenance_is_still_checked_by_its_tensors(tmp_path: Path) -> None:
    import torch

    from lth_core.preflight import InputError, read_mask_file
    from lth_core.storage.files import put_tensors

    put_tensors(LocalStore(tmp_path), "old.safetensors", {"fc.weight": torch.ones(2, 2)})
    masks = read_mask_file(tmp_path / "old.safetensors", model="conv2")
    assert list(masks) == ["fc.weight"]
    assert provenance.describe({}) == "a mask file without provenance"
    with pytest.raises(InputError, match="holds no masks"):
        put_tensors(LocalStore(tmp_path), "empty.safetensors", {"init/x": torch.ones(1)})
        read_mask_file(tmp_path / "empty.safetensors")


def test_the_tiny_spec_is_what_the_fixture_ran(engine_run: EngineRun) -> None:
    from lth_core.spec import parse_spec

    assert parse_spec(TINY_SPEC).model_dump(mode="json") == engine_run.spec
