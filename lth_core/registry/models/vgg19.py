"""VGG-19 for CIFAR-10 with batch norm (Frankle & Carbin 2019, Figure 2 and Appendix I)."""

from lth_core.registry import ModelEntry

# 160 epochs at batch 64 over 45,000 training examples (5,000 held out) is 112,480
# iterations, 703 per epoch; the 10x drops at epochs 80 and 120 land at these iterations.
_ITERATIONS_PER_EPOCH = 703

ENTRY = ModelEntry(
    name="vgg19",
    factory="lth_core.nn.models.vgg:VGG19",
    paper_defaults={
        "dataset": {"name": "cifar10", "augment": True},
        "training": {
            "optimizer": "sgd",
            "learning_rate": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "batch_size": 64,
            "iterations": 112_480,
            "lr_milestones": [80 * _ITERATIONS_PER_EPOCH, 120 * _ITERATIONS_PER_EPOCH],
            "lr_gamma": 0.1,
        },
        "pruning": {"strategy": "global", "global_rate": 0.2, "exclude": ["output"]},
    },
    layer_kinds=("conv", "output"),
)
