"""The paper's CIFAR "ResNet-18", a 20-layer ResNet (Frankle & Carbin 2019, Appendix I)."""

from lth_core.registry import ModelEntry

ENTRY = ModelEntry(
    name="resnet18",
    factory="lth_core.nn.models.resnet:ResNet20",
    paper_defaults={
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
    layer_kinds=("conv", "shortcut", "output"),
)
