"""Same bits as before: digests of what tiny experiments train, recorded from the engine as it was.

The expected digests were produced by the engine before the training-loop refactor (issue 10),
by running this file as a script against that code (commit f7738fe), on each kind of CPU the
project is tested on:

    git archive f7738fe | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old .venv/bin/python tests/test_engine_digests.py

Bits are only promised per machine (same CPU, same thread count): MKL and oneDNN take other
code paths on other CPUs, so the digests are kept per CPU model and torch version
(`machine_key()`). On a CPU with no recorded digests the comparison is skipped, saying so and
how to record them, and `test_the_same_spec_twice_gives_the_same_bits` still holds there.

Each spec covers a part of the engine whose bits must not move: layer-wise and global pruning,
init / rewind / finetune resets, iterative and one-shot schedules, both controls, SGD with
momentum, weight decay, warmup and milestones, dropout, batch norm, augmentation, and stacked
levels (LeNet's hand-written stack and the vmap stack). Stacked runs equal one-by-one runs
only to float tolerance, but a stacked level is deterministic too, so it has its own digest.
What is digested is what the engine trains: every tensor of every safetensors file (masks,
θ0, rewind points, trained weights, the ticket: the one the pre-issue-11 rule exported,
re-exported by `Experiment.export_ticket`, see `legacy_ticket_level`) and every run's metrics (its curve and
early-stop numbers, NaN and null alike). Reports derived from them (summary.json,
results.json, the echoed spec) and file metadata are left out: later issues add fields
there on purpose, and a changed number in them would show in the runs' metrics first.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from lth_core.experiment import Experiment
from lth_core.spec import ExperimentSpec, _merge, parse_spec

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
    # The engine's old "finetune" (the whole schedule replayed from the trained weights with a
    # fresh optimizer) is issue 11's "lr_rewind"; "finetune" is now the classic baseline.
    "lenet_finetune_layerwise": {"reset": {"mode": "lr_rewind"}, "controls": ["random_prune"]},
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

# The metrics of a run that the engine before the refactor wrote (later fields are new facts).
RUN_METRICS = (
    "level",
    "kind",
    "weights_remaining",
    "start_iteration",
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_val_accuracy",
    "early_stop_test_accuracy",
    "final_test_accuracy",
    "iterations",
)
CURVE_METRICS = ("iteration", "train_loss", "val_loss", "val_accuracy", "test_accuracy")

# Generated from the engine before the refactor (see the module docstring); do not edit by hand.
# Keyed by machine_key(): bits are the same on the same CPU and torch, not across CPUs.
EXPECTED_BY_MACHINE: dict[str, dict[str, str]] = {
    "AMD EPYC | AVX2 | torch 2.14.1+cu130": {
        "lenet_layerwise_init_iterative": "834eef100516b0383b10917ec8b67f7b732b29f133dee2bc9cf637a732f5a4f4",
        "lenet_global_rewind_oneshot_sgd_dropout": "4ec4d94b32f44c0b4fb8f64e156e3cd57cbbeff12271552810c0573a00c13fe1",
        "lenet_finetune_layerwise": "6b18795d8b0c21a850044da96d3ea79746556b6dcc9be8e66c01d2ede8e7c488",
        "conv2_augment": "f5d9acfddc066867d95e4bb9894a7926e6575efee80b62100fc85e6dd6bf70fa",
        "resnet_batchnorm_global": "47f31ddb901e9e5c34c0c98dc8e27a76ca1dd2057823588a309f0684f9e75580",
        "lenet_stacked": "fcec7beed795a8c770a174e4cf7d04485ba0e5f4c21859893c94526280c480ea",
        "conv2_stacked_vmap": "eb9911813c0d2b48dcde035e7a2addd16b5135fc69f280401564c64946fbb288",
    },
    "AMD EPYC | AVX512 | torch 2.14.1+cu130": {
        "lenet_layerwise_init_iterative": "0ab7f818abfddecf91de359d27f093fea5ca1d3f59e65a33d89b05fcc097bd89",
        "lenet_global_rewind_oneshot_sgd_dropout": "f0783e3bbc10880944bacbac5a640027db460f85c7362f292ece753ff9825404",
        "lenet_finetune_layerwise": "6c9824de5ff527dff29a2e52e630d0c102b3ea94818aafea1a06331ae6cb4ac4",
        "conv2_augment": "5b84d74fd7a0b51c912c20124e4ec136976b8a138e650600d4b54ffca2d2b929",
        "resnet_batchnorm_global": "094fe13073bca7588b1a17cb7a9d489f713a4cbda1db3dc760259bea528bdb52",
        "lenet_stacked": "3f3959b7e047c07ee9e8df4e1b13f060f3a8d3c501d3e322f7f96c966b07d3a7",
        "conv2_stacked_vmap": "8bacf9c549d6b1226647ac9c082937d7b85b59f81976dff4d82217d628486806",
    },
    "Intel(R) Xeon(R) Processor | AVX512 | torch 2.14.1+cu130": {
        "lenet_layerwise_init_iterative": "bffed45e325f7f4d1038a83267ddd509efaef635c0dcc8d5e6b9b78a1444a00c",
        "lenet_global_rewind_oneshot_sgd_dropout": "655ab950bee4869db47c9b6b9ee7cc87bf433eccdb164b01cd67e212f2f88f6e",
        "lenet_finetune_layerwise": "11d7c3df57d6b9af640e24774a2f40de270816489f100a6a692b0b13affeb739",
        "conv2_augment": "22bed5bbc1355fd89837e0cea6c021f90b1f52dcf14903af9035654eea5ef78d",
        "resnet_batchnorm_global": "61daa3603dd5fdf737634ebbc90780cc54cbfd64e793c2a0109acbe5882d67b0",
        "lenet_stacked": "9705ab197e21bb138c734dd11a4c51c883bbd874613eeeaa50223877abf8ade8",
        "conv2_stacked_vmap": "1548a4b8d00c92d1abecb7dd9f24ff2729c072f9cc9728787f538dd4117a54e6",
    },
}


def machine_key() -> str:
    """The CPU model and torch version: what decides which kernels (and so which bits) run."""
    cpu = "unknown cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__}"


EXPECTED: dict[str, str] | None = EXPECTED_BY_MACHINE.get(machine_key())


def _number(value: Any) -> Any:
    """NaN and null are the same missing number (strict-JSON writers turn one into the other)."""
    return None if isinstance(value, float) and value != value else value


def _run_digest(path: Path) -> str:
    run = json.loads(path.read_text())
    facts = {key: _number(run.get(key)) for key in RUN_METRICS}
    facts["curve"] = [
        {key: _number(record.get(key)) for key in CURVE_METRICS} for record in run["curve"]
    ]
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _tensors_digest(path: Path) -> str:
    h = hashlib.sha256()
    with safe_open(str(path), "pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name)
            h.update(f"{name}:{t.dtype}:{list(t.shape)}".encode())
            h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def legacy_ticket_level(experiment: Experiment) -> int:
    """The level the engine before issue 11 exported as the ticket: the sparsest level whose
    early-stop *test* accuracy is at least level 0's minus the tolerance. Issue 11 chooses on
    validation (and by early-stop iteration, unbroken run and controls) on purpose, so the
    ticket file it writes may be another level's; the digest takes this level's export."""
    by_level = {int(s["level"]): s for s in experiment.summaries()}
    bar = by_level[0]["early_stop_test_accuracy"] - experiment.spec.ticket_tolerance
    winners = [s for s in by_level.values() if s["early_stop_test_accuracy"] >= bar - 1e-12]
    return min(winners, key=lambda s: (s["weights_remaining"], -int(s["level"])))["level"]


def folder_digest(root: Path, ticket: Path | None = None) -> str:
    """One digest over every tensor file and every run's metrics, by relative path
    (`ticket`: the file to digest as ticket.safetensors)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name == "ticket.safetensors" and path.parent == root and ticket is not None:
            path_digest = _tensors_digest(ticket)
            h.update(f"{path.relative_to(root)}={path_digest}\n".encode())
            continue
        if path.suffix == ".safetensors":
            digest = _tensors_digest(path)
        elif path.parent.name == "runs" and path.suffix == ".json":
            digest = _run_digest(path)
        else:
            continue
        h.update(f"{path.relative_to(root)}={digest}\n".encode())
    return h.hexdigest()


def _parse_for_this_engine(data: dict[str, Any]) -> ExperimentSpec:
    """The spec as the engine on the path reads it: the pre-refactor engine (f7738fe), which
    records the digests, calls today's lr_rewind "finetune"."""
    try:
        return parse_spec(data)
    except ValueError:
        if data.get("reset", {}).get("mode") != "lr_rewind":
            raise
        return parse_spec(_merge(data, {"reset": {"mode": "finetune"}}))


def run_spec(name: str, out: Path) -> Experiment:
    spec = _parse_for_this_engine(_merge(BASE, SPECS[name]))
    experiment = Experiment(spec, out, device="cpu")
    stack = True if spec.training.stack_runs == "auto" else None
    for level in experiment.levels:
        experiment.prepare_level(level)
        experiment.train_runs(level, stack=stack)
        experiment.finish_level(level)
    return experiment


def legacy_digest(experiment: Experiment, workdir: Path) -> str:
    """The folder's digest with the ticket the pre-issue-11 rule exported (the pre-refactor
    engine wrote that one itself and has no export_ticket)."""
    if not hasattr(experiment, "export_ticket"):
        return folder_digest(experiment.layout.root)
    ticket = workdir / f"{experiment.layout.root.name}-legacy-ticket.safetensors"
    experiment.export_ticket(legacy_ticket_level(experiment), ticket)
    return folder_digest(experiment.layout.root, ticket)


def digests(workdir: Path) -> dict[str, str]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: legacy_digest(run_spec(name, workdir / name), workdir) for name in SPECS}
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digests")


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", list(SPECS))
def test_same_bits_as_before_the_refactor(name: str, digest_dir: Path) -> None:
    if EXPECTED is None:
        pytest.skip(
            f"no digests recorded for this machine ({machine_key()}); record them with the "
            "pre-refactor engine as the module docstring says"
        )
    experiment = run_spec(name, digest_dir / name)
    assert legacy_digest(experiment, digest_dir) == EXPECTED[name]


@pytest.mark.usefixtures("one_torch_thread")
def test_the_exported_ticket_is_the_chosen_level(tmp_path: Path) -> None:
    """What the digests take from the old rule: ticket.safetensors is the mask and start
    weights of the level results.json names under issue 11's rule."""
    experiment = run_spec("lenet_layerwise_init_iterative", tmp_path)
    layout = experiment.layout
    results = json.loads(layout.results.read_text())
    level = results["ticket_level"]
    assert level == results["ticket"]["level"]
    with safe_open(str(layout.ticket), "pt") as f, safe_open(str(layout.mask(level)), "pt") as m:
        assert int(f.metadata()["level"]) == level
        for name in m.keys():  # noqa: SIM118 (safe_open is not iterable)
            assert torch.equal(f.get_tensor(f"mask/{name}"), m.get_tensor(name))


@pytest.mark.usefixtures("one_torch_thread")
def test_the_same_spec_twice_gives_the_same_bits(tmp_path: Path) -> None:
    """On any machine: one spec run twice in one process writes the same masks and metrics."""
    name = "lenet_global_rewind_oneshot_sgd_dropout"
    first = folder_digest(run_spec(name, tmp_path / "first").layout.root)
    assert first == folder_digest(run_spec(name, tmp_path / "second").layout.root)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({machine_key(): digests(Path(tmp))}, indent=4))
    sys.exit(0)
