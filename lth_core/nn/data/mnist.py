"""MNIST and Fashion-MNIST: local idx files first (e.g. Debian's dataset-fashion-mnist), else torchvision."""

from __future__ import annotations

import os
from pathlib import Path

from lth_core.nn.data.base import DatasetUnavailable, RawData
from lth_core.nn.data.cache import cached_tensors
from lth_core.nn.data.idx import find_idx_files, read_idx
from lth_core.spec import DatasetSpec

_INFO = {
    # name: (torchvision class, normalization mean, std, local folders searched)
    "mnist": ("MNIST", 0.1307, 0.3081, ["/usr/share/datasets/mnist"]),
    "fashion_mnist": (
        "FashionMNIST",
        0.2860,
        0.3530,
        ["/usr/share/datasets/fashion-mnist"],
    ),
}


def load_mnist(spec: DatasetSpec) -> RawData:
    return load_mnist_like("mnist", spec.root)


def load_fashion_mnist(spec: DatasetSpec) -> RawData:
    return load_mnist_like("fashion_mnist", spec.root)


def default_root() -> Path:
    return Path(os.environ.get("LTH_DATASETS_DIR", Path.home() / ".cache" / "lth" / "datasets"))


def load_mnist_like(name: str, root: str | None, download: bool = True) -> RawData:
    tv_class, mean, std, system_dirs = _INFO[name]
    base = Path(root) if root else default_root()
    candidates = [base, base / name, base / tv_class]
    if root is None:
        candidates += [Path(d) for d in system_dirs]
    for folder in candidates:
        files = find_idx_files(folder)
        if files:
            return _from_files(name, files, mean, std)
    if download:
        try:
            import torchvision

            cls = getattr(torchvision.datasets, tv_class)
            cls(str(base), train=True, download=True)
            cls(str(base), train=False, download=True)
        except Exception as exc:  # network errors come in many types
            raise DatasetUnavailable(_how_to_get(name, candidates, exc)) from exc
        files = find_idx_files(base / tv_class)
        if files:
            return _from_files(name, files, mean, std)
    raise DatasetUnavailable(_how_to_get(name, candidates, None))


def _from_files(name: str, files: dict[str, Path], mean: float, std: float) -> RawData:
    """The idx files decoded once, then read from the cache (lth_core.nn.data.cache)."""
    decoded = cached_tensors(
        default_root(), name, files, lambda: {key: read_idx(path) for key, path in files.items()}
    )

    def images(key: str):
        return decoded[key].unsqueeze(1).float().div_(255.0)

    return RawData(
        train_x=images("train_x"),
        train_y=decoded["train_y"],
        test_x=images("test_x"),
        test_y=decoded["test_y"],
        num_classes=10,
        mean=(mean,),
        std=(std,),
    )


def _how_to_get(name: str, searched: list[Path], error: Exception | None) -> str:
    where = ", ".join(str(p) for p in searched)
    hint = (
        "On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` puts the files in "
        "/usr/share/datasets/fashion-mnist. "
        if name == "fashion_mnist"
        else ""
    )
    why = f" Download failed: {error}." if error else ""
    return (
        f"dataset {name!r} not found (looked in {where}).{why} {hint}Put the four idx files "
        "(train-images-idx3-ubyte[.gz], ...) in a folder and set dataset.root to it, or set "
        "LTH_DATASETS_DIR, or run where torchvision can download it."
    )
