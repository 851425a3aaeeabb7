"""Every model builds and trains a step on its dataset's shape; datasets load from local files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from lth_core.nn.data import DatasetUnavailable, load_splits
from lth_core.nn.data.augment import flip_and_crop
from lth_core.nn.data.idx import read_idx
from lth_core.nn.data.mnist import load_mnist_like
from lth_core.nn.models import build_model
from lth_core.registry.datasets import DATASETS
from lth_core.registry.models import MODELS
from lth_core.spec import DatasetSpec

FASHION = Path("/usr/share/datasets/fashion-mnist")

# Conv/linear weights we build, by model, on the paper's datasets.
WEIGHTS = {
    "lenet_300_100": 266_200,
    "conv2": 4_300_992,
    "conv4": 2_425_024,
    "conv6": 2_261_184,
    "vgg19": 20_024_000,
    "resnet18": 270_896,
}


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_model_builds_counts_and_steps(name: str) -> None:
    dataset = "mnist" if name == "lenet_300_100" else "cifar10"
    shape, classes = DATASETS[dataset].input_shape, DATASETS[dataset].num_classes
    model = build_model(name, shape, classes, seed=0)
    kinds = model.weight_kinds()
    assert set(kinds.values()) == set(MODELS[name].layer_kinds)  # the entry's facts hold
    state = model.state_dict()
    assert sum(state[n].numel() for n in kinds) == WEIGHTS[name]
    assert "out.weight" in kinds and kinds["out.weight"] == "output"
    x = torch.randn(4, *shape)
    y = torch.randint(0, classes, (4,))
    before = state["out.weight"].clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert model(x).shape == (4, classes)
    assert not torch.equal(before, model.state_dict()["out.weight"])


def test_same_seed_same_init_other_seed_other_init() -> None:
    a = build_model("conv2", (3, 32, 32), 10, seed=5).state_dict()
    b = build_model("conv2", (3, 32, 32), 10, seed=5).state_dict()
    c = build_model("conv2", (3, 32, 32), 10, seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["convs.0.weight"], c["convs.0.weight"])


def test_gaussian_glorot_initialization() -> None:
    weight = build_model("lenet_300_100", (1, 28, 28), 10, seed=0).state_dict()["fc1.weight"]
    expected_std = (2.0 / (784 + 300)) ** 0.5
    assert weight.std().item() == pytest.approx(expected_std, rel=0.02)
    assert weight.mean().abs().item() < 1e-3


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_loads_from_the_debian_package_with_a_validation_split() -> None:
    splits = load_splits(DatasetSpec(name="fashion_mnist", validation_size=5000, train_subset=1000))
    assert splits.train_x.shape == (1000, 1, 28, 28)
    assert splits.val_x.shape == (5000, 1, 28, 28)
    assert splits.test_x.shape == (10000, 1, 28, 28)
    assert splits.train_y.dtype == torch.int64 and set(splits.test_y.unique().tolist()) == set(
        range(10)
    )
    full = load_splits(DatasetSpec(name="fashion_mnist"))
    assert full.train_x.shape[0] == 55_000
    # Validation comes out of the training set, disjoint from what is trained on.
    train_rows = {tuple(r) for r in full.train_x[:, 0, 14, :].tolist()[:2000]}
    assert not any(tuple(r) in train_rows for r in full.val_x[:, 0, 14, :].tolist()[:200])


def test_idx_reader_round_trip(tmp_path: Path) -> None:
    images = torch.randint(0, 255, (3, 4, 5), dtype=torch.uint8)
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (3, 4, 5))
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + images.numpy().tobytes())
    assert torch.equal(read_idx(path), images)


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match=r"dataset\.root"):
        load_mnist_like("mnist", str(tmp_path), download=False)


def test_augmentation_flips_and_shifts_but_keeps_shape() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = flip_and_crop(x, torch.Generator().manual_seed(0), (0.0, 0.0, 0.0), pad=2)
    assert out.shape == x.shape
    again = flip_and_crop(x, torch.Generator().manual_seed(0), (0.0, 0.0, 0.0), pad=2)
    assert torch.equal(out, again)
