"""Same bits as before: digests of what tiny experiments write, recorded from the engine as it was.

The expected digests were produced by the engine before the training-loop refactor (issue 10),
by running this file as a script against that code:

    PYTHONPATH=/path/to/old/checkout .venv/bin/python tests/test_engine_digests.py

Each spec covers a part of the engine whose bits must not move: layer-wise and global pruning,
init / rewind / finetune resets, iterative and one-shot schedules, both controls, SGD with
momentum, weight decay, warmup and milestones, dropout, batch norm, augmentation, and stacked
levels (LeNet's hand-written stack and the vmap stack). Stacked runs equal one-by-one runs
only to float tolerance, but a stacked level is deterministic too, so it has its own digest.
Every file an experiment writes is digested (safetensors by content, not by header order) (a folder written by the old engine therefore
resumes with the new one), except the wall-clock `seconds` of each run.

Two changes of representation, not of numbers (issue 15), are digested as before: run files
are strict JSON now, writing `null` where the old engine wrote `NaN` (train_loss at the first
evaluation), so a null in a run's curve digests as the NaN it stands for; and a ticket's
metadata gained `model`, `dataset` and `normalization` (for lth_core.tickets), which are
left out of its digest and checked in tests/test_first_hour.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from lth_core.experiment import Experiment
from lth_core.spec import _merge, parse_spec

BASE: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": {
        "name": "synthetic",
        "validation_size": 40,
        "synthetic": {"input_shape": [1, 8, 8], "train_size": 240, "test_size": 40},
    },
    "training": {"iterations": 12, "eval_every": 4, "batch_size": 20, "stack_runs": "never"},
    "pruning": {"levels": 2},
    "controls": ["random_reinit", "random_prune"],
}

SPECS: dict[str, dict[str, Any]] = {
    "lenet_layerwise_init_iterative": {},
    "lenet_global_rewind_oneshot_sgd_dropout": {
        "training": {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.9,
            "weight_decay": 1e-3,
            "warmup_iterations": 4,
            "lr_milestones": [6, 10],
            "lr_gamma": 0.5,
            "dropout": 0.2,
        },
        "pruning": {"strategy": "global", "global_rate": 0.3, "schedule": "oneshot"},
        "reset": {"mode": "rewind", "rewind_iteration": 4},
    },
    "lenet_finetune_layerwise": {"reset": {"mode": "finetune"}, "controls": ["random_prune"]},
    "conv2_augment": {
        "model": "conv2",
        "dataset": {"augment": True, "synthetic": {"input_shape": [3, 8, 8]}},
        "training": {"iterations": 8},
        "pruning": {"levels": 1},
        "controls": ["random_reinit"],
    },
    "resnet_batchnorm_global": {
        "model": "resnet18",
        "dataset": {"synthetic": {"input_shape": [3, 8, 8]}},
        "training": {
            "iterations": 6,
            "eval_every": 3,
            "batch_size": 16,
            "learning_rate": 0.05,
            "lr_milestones": [4],
        },
        "pruning": {"levels": 1},
        "controls": ["random_prune"],
    },
    "lenet_stacked": {"training": {"stack_runs": "auto"}},
    "conv2_stacked_vmap": {
        "model": "conv2",
        "dataset": {"synthetic": {"input_shape": [3, 8, 8]}},
        "training": {"iterations": 8, "stack_runs": "auto"},
        "pruning": {"levels": 1},
    },
}

# Generated from the engine before the refactor (see the module docstring); do not edit by hand.
EXPECTED: dict[str, str] = {
    "lenet_layerwise_init_iterative": "6ae49f7bba94a407909ffc2c1ba67557d3d4ffe361f675f16b6956fbe99b5f0f",
    "lenet_global_rewind_oneshot_sgd_dropout": "9eb42d8a2c6c3595e8e08c6255357b51a77093f1399d8bb17f70fc8cd12f205a",
    "lenet_finetune_layerwise": "7d43c8344860fee32f4c504b1d378e85d219e99fd8d94d338551e5e378a90fbc",
    "conv2_augment": "fb6e2fa0e29a095200d804d460761f5ea52ad6e18d922b1ce71227581c66cae4",
    "resnet_batchnorm_global": "4a2be886a0471ce5dfc8bd0ef9b2e11e02ac8eb1748b13c061837d51d31f013e",
    "lenet_stacked": "a0c5f9cfcd3bd56608e9ab59475b42d347df83cbd1faaeb26476e7ee582eade3",
    "conv2_stacked_vmap": "f2896c985636ec4c417f9ae45e0abaffd016376e00b063060d636c3969c0ac7a",
}


TICKET_USE_KEYS = ("model", "dataset", "normalization")


def _file_digest(path: Path) -> str:
    if path.parent.name == "runs" and path.suffix == ".json":
        run = json.loads(path.read_text())
        run.pop("seconds")
        run["curve"] = [
            {k: math.nan if v is None else v for k, v in point.items()} for point in run["curve"]
        ]
        return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()
    if path.suffix == ".safetensors":
        # The header's metadata map is written in hash-map order, which varies between
        # processes: digest the metadata sorted and each tensor's name, dtype, shape and bytes.
        h = hashlib.sha256()
        with safe_open(str(path), "pt") as f:
            meta = {k: v for k, v in (f.metadata() or {}).items() if k not in TICKET_USE_KEYS}
            h.update(json.dumps(meta or None, sort_keys=True).encode())
            for name in sorted(f.keys()):
                t = f.get_tensor(name)
                h.update(f"{name}:{t.dtype}:{list(t.shape)}".encode())
                h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_digest(root: Path) -> str:
    """One digest over every file's relative path and content (run seconds left out)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(root)}={_file_digest(path)}\n".encode())
    return h.hexdigest()


def run_spec(name: str, out: Path) -> Experiment:
    spec = parse_spec(_merge(BASE, SPECS[name]))
    experiment = Experiment(spec, out, device="cpu")
    stack = True if spec.training.stack_runs == "auto" else None
    for level in experiment.levels:
        experiment.prepare_level(level)
        experiment.train_runs(level, stack=stack)
        experiment.finish_level(level)
    return experiment


def digests(workdir: Path) -> dict[str, str]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: folder_digest(run_spec(name, workdir / name).layout.root) for name in SPECS}
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digests")


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", list(SPECS))
def test_same_bits_as_before_the_refactor(name: str, digest_dir: Path) -> None:
    experiment = run_spec(name, digest_dir / name)
    assert folder_digest(experiment.layout.root) == EXPECTED[name]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(digests(Path(tmp)), indent=4))
    sys.exit(0)
