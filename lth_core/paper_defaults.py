"""The paper's hyperparameters for each model (Frankle & Carbin 2019, Figure 2 and Appendices G-I).

Kept as plain data, free of torch, so that the API process can fill in defaults and show them
to a user before any worker touches the spec.
"""

from __future__ import annotations

from typing import Any

# VGG-19: 160 epochs at batch 64 over 45,000 training examples (5,000 held out) is 112,480
# iterations, 703 per epoch; the 10x drops at epochs 80 and 120 land at these iterations.
_VGG_ITERATIONS_PER_EPOCH = 703

PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet_300_100": {
        "dataset": {"name": "mnist"},
        "training": {
            "optimizer": "adam",
            "learning_rate": 1.2e-3,
            "batch_size": 60,
            "iterations": 50_000,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.0, "fc": 0.2, "output": 0.1}},
    },
    "conv2": {
        "dataset": {"name": "cifar10"},
        "training": {
            "optimizer": "adam",
            "learning_rate": 2e-4,
            "batch_size": 60,
            "iterations": 20_000,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.1, "fc": 0.2, "output": 0.1}},
    },
    "conv4": {
        "dataset": {"name": "cifar10"},
        "training": {
            "optimizer": "adam",
            "learning_rate": 3e-4,
            "batch_size": 60,
            "iterations": 25_000,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.1, "fc": 0.2, "output": 0.1}},
    },
    "conv6": {
        "dataset": {"name": "cifar10"},
        "training": {
            "optimizer": "adam",
            "learning_rate": 3e-4,
            "batch_size": 60,
            "iterations": 30_000,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.15, "fc": 0.2, "output": 0.1}},
    },
    "vgg19": {
        "dataset": {"name": "cifar10", "augment": True},
        "training": {
            "optimizer": "sgd",
            "learning_rate": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "batch_size": 64,
            "iterations": 112_480,
            "lr_milestones": [80 * _VGG_ITERATIONS_PER_EPOCH, 120 * _VGG_ITERATIONS_PER_EPOCH],
            "lr_gamma": 0.1,
        },
        "pruning": {"strategy": "global", "global_rate": 0.2, "exclude": ["output"]},
    },
    "resnet18": {
        "dataset": {"name": "cifar10", "augment": True},
        "training": {
            "optimizer": "sgd",
            "learning_rate": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "batch_size": 128,
            "iterations": 30_000,
            "lr_milestones": [20_000, 25_000],
            "lr_gamma": 0.1,
        },
        "pruning": {"strategy": "global", "global_rate": 0.2, "exclude": ["output", "shortcut"]},
    },
}

MODEL_NAMES: tuple[str, ...] = tuple(PAPER_DEFAULTS)

# Input shape (channels, height, width) and class count of each dataset, known without loading it.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}
DATASET_NAMES: tuple[str, ...] = (*DATASET_SHAPES, "synthetic")
