"""Conv-2 (Frankle & Carbin 2019, Figure 2): the VGG-like CIFAR network with 2 3x3 convs."""

from lth_core.registry import ModelEntry, Stacking

ENTRY = ModelEntry(
    name="conv2",
    factory="lth_core.models.conv:ConvNet",
    factory_kwargs={"depth": 2},
    paper_defaults={
        "dataset": {"name": "cifar10"},
        "training": {
            "optimizer": "adam",
            "learning_rate": 2e-4,
            "batch_size": 60,
            "iterations": 20_000,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.1, "fc": 0.2, "output": 0.1}},
    },
    layer_kinds=("conv", "fc", "output"),
    # vmap: on a CPU it costs more per member than one model alone; a GPU idles without it.
    stacking=Stacking(by_default_on=("cuda",)),
)
