"""Artifact digests (issue 24): a sha-256 written with every artifact, checked on every read
and on resume; a corrupt file is named (file and experiment), and resuming trains its run
again, to the same bits, instead of failing forever."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_engine_digests import BASE, folder_digest

from lth_core.storage.store import CorruptArtifact, LocalStore

SPEC: dict[str, Any] = {**BASE, "pruning": {"levels": 2}, "controls": ["random_reinit"]}


def _flip(path: Path, at: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_local_store_records_and_checks_digests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "exp")
    store.put("levels/001/mask.safetensors", b"0123456789" * 10)
    digest = hashlib.sha256(b"0123456789" * 10).hexdigest()
    assert store.digest("levels/001/mask.safetensors") == digest
    assert store.list() == ["levels/001/mask.safetensors"]  # the sidecar is not an artifact
    _flip(store.local_path("levels/001/mask.safetensors"))
    with pytest.raises(CorruptArtifact, match=r"exp/levels/001/mask.safetensors is corrupt"):
        store.get("levels/001/mask.safetensors")
    with pytest.raises(CorruptArtifact):
        store.verify("levels/001/mask.safetensors")
    store.delete("levels/001/mask.safetensors")
    assert store.digest("levels/001/mask.safetensors") is None
    assert not any(p.is_file() for p in (tmp_path / "exp").rglob("*"))
    # A file written before digests (no sidecar) is read unchecked.
    (tmp_path / "exp" / "old.json").write_text("{}")
    assert store.get("old.json") == b"{}" and store.digest("old.json") is None


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    import torch

    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("integrity") / "exp"
    Experiment(parse_spec(SPEC), out, device="cpu").run()
    return out, folder_digest(out)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.usefixtures("one_torch_thread")
def test_reads_name_the_corrupt_file(finished: tuple[Path, str], tmp_path: Path) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec

    out = _copy(finished[0], tmp_path / "exp")
    _flip(out / "init.safetensors")
    with pytest.raises(CorruptArtifact, match=r"exp/init.safetensors is corrupt: its sha-256"):
        Experiment(parse_spec(SPEC), out, device="cpu")
    # Not safetensors at all and no digest to compare: still named, not a bare SafetensorError.
    (out / ".init.safetensors.sha256").unlink()
    (out / "init.safetensors").write_bytes(b"garbage")
    with pytest.raises(CorruptArtifact, match=r"init.safetensors is corrupt: not a safetensors"):
        Experiment(parse_spec(SPEC), out, device="cpu")


@pytest.mark.usefixtures("one_torch_thread")
def test_resuming_retrains_the_runs_of_corrupt_files_to_the_same_bits(
    finished: tuple[Path, str], tmp_path: Path
) -> None:
    from lth_core.experiment import Experiment
    from lth_core.spec import parse_spec

    out = _copy(finished[0], tmp_path / "exp")
    corrupt = [
        "levels/001/mask.safetensors",
        "levels/001/trained.safetensors",
        "levels/002/runs/random_reinit.json",
        "ticket.safetensors",
    ]
    for key in corrupt:
        _flip(out / key)
    experiment = Experiment(parse_spec(SPEC), out, device="cpu", repair=True)
    assert sorted(c.key for c in experiment.repaired) == sorted(corrupt)
    assert all(str(out) in str(c) for c in experiment.repaired)
    assert experiment.pending() == [(1, "ticket"), (1, "random_reinit"), (2, "random_reinit")]
    experiment.run()
    assert folder_digest(out) == finished[1]
    summary = json.loads((out / "levels/002/summary.json").read_text())
    assert summary["level"] == 2
