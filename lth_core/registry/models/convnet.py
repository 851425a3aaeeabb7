"""What Conv-2, Conv-4 and Conv-6 share (Frankle & Carbin 2019, Figure 2): the VGG-like CIFAR
network (lth_core.nn.models.conv), Adam at batch 60, fc 20% / output 10% per level; they differ
in depth, learning rate, iterations and the conv layers' rate."""

from lth_core.registry import ModelEntry, Stacking


def convnet_entry(
    depth: int, learning_rate: float, iterations: int, conv_rate: float
) -> ModelEntry:
    return ModelEntry(
        name=f"conv{depth}",
        factory="lth_core.nn.models.conv:ConvNet",
        factory_kwargs={"depth": depth},
        paper_defaults={
            "dataset": {"name": "cifar10"},
            "training": {
                "optimizer": "adam",
                "learning_rate": learning_rate,
                "batch_size": 60,
                "iterations": iterations,
            },
            "pruning": {
                "strategy": "layerwise",
                "rates": {"conv": conv_rate, "fc": 0.2, "output": 0.1},
            },
        },
        layer_kinds=("conv", "fc", "output"),
        # vmap: on a CPU it costs more per member than one model alone; a GPU idles without it.
        stacking=Stacking(by_default_on=("cuda",)),
    )
