"""The decoded-dataset cache (lth_core/nn/data/cache.py): same bits as decoding, decoded once,
keyed by the sources' bytes, and a corrupt or half-written cache is never what is read."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from lth_core.nn.data import cache, mnist
from lth_core.nn.data.idx import find_idx_files, read_idx

REAL = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _tiny_idx(folder: Path, seed: int = 0) -> Path:
    """The four idx files of a 12 + 5 example, 28x28 dataset."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 12))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 5))
    return folder


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LTH_DATASETS_DIR", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def _decode_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def counting(path: Path) -> torch.Tensor:
        calls.append(path)
        return read_idx(path)

    monkeypatch.setattr(mnist, "read_idx", counting)
    return calls


def _same(a, b) -> None:
    for field in ("train_x", "train_y", "test_x", "test_y"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and torch.equal(x, y), field


def test_cached_equals_decoded_and_second_load_does_not_decode(
    tmp_path: Path, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tiny_idx(tmp_path / "src")
    decodes = _decode_counter(monkeypatch)
    first = mnist.load_mnist_like("fashion_mnist", str(root), download=False)
    assert len(decodes) == 4
    files = list(cache.cache_dir(datasets_dir).glob("fashion_mnist-*.safetensors"))
    assert len(files) == 1 and not list(cache.cache_dir(datasets_dir).glob("*.tmp"))
    second = mnist.load_mnist_like("fashion_mnist", str(root), download=False)
    assert len(decodes) == 4  # read from the cache
    _same(first, second)
    assert first.train_x.shape == (12, 1, 28, 28) and second.train_y.dtype == torch.int64


def test_changed_sources_are_decoded_again(
    tmp_path: Path, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tiny_idx(tmp_path / "src")
    mnist.load_mnist_like("mnist", str(root), download=False)
    other = _tiny_idx(tmp_path / "src2", seed=1)
    for name in ("train-images-idx3-ubyte.gz",):
        (root / name).write_bytes((other / name).read_bytes())
    decodes = _decode_counter(monkeypatch)
    data = mnist.load_mnist_like("mnist", str(root), download=False)
    assert len(decodes) == 4
    fresh = read_idx(root / "train-images-idx3-ubyte.gz").unsqueeze(1).float().div_(255.0)
    assert torch.equal(data.train_x, fresh)
    assert len(list(cache.cache_dir(datasets_dir).glob("mnist-*.safetensors"))) == 2


@pytest.mark.parametrize("damage", [b"", b"not a safetensors file", None])
def test_corrupt_cache_is_ignored_and_rewritten(
    tmp_path: Path, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes | None
) -> None:
    root = _tiny_idx(tmp_path / "src")
    files = find_idx_files(root)
    assert files is not None
    first = mnist.load_mnist_like("mnist", str(root), download=False)
    path = cache.cache_path(datasets_dir, "mnist", files)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage is None else damage)  # None: truncated
    decodes = _decode_counter(monkeypatch)
    again = mnist.load_mnist_like("mnist", str(root), download=False)
    assert len(decodes) == 4
    _same(first, again)
    assert path.read_bytes() == good


def test_unwritable_cache_folder_only_costs_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the datasets folder would be")
    monkeypatch.setenv("LTH_DATASETS_DIR", str(blocker))
    root = _tiny_idx(tmp_path / "src")
    data = mnist.load_mnist_like("mnist", str(root), download=False)
    assert data.train_x.shape[0] == 12


@pytest.mark.skipif(find_idx_files(REAL) is None, reason="no Fashion-MNIST in " + str(REAL))
def test_real_fashion_mnist_cached_bits(datasets_dir: Path) -> None:
    files = find_idx_files(REAL)
    assert files is not None
    decoded = {key: read_idx(path) for key, path in files.items()}
    mnist.load_mnist_like("fashion_mnist", None, download=False)
    cached = cache.cached_tensors(datasets_dir, "fashion_mnist", files, lambda: {})
    assert set(cached) == set(decoded)
    for key, tensor in decoded.items():
        assert cached[key].dtype == tensor.dtype and torch.equal(cached[key], tensor), key
