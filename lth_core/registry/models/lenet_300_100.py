"""LeNet-300-100 (Frankle & Carbin 2019, Figure 2): fc 300, 100, 10 on MNIST."""

from lth_core.registry import ModelEntry, Stacking

ENTRY = ModelEntry(
    name="lenet_300_100",
    factory="lth_core.nn.models.lenet:LeNet300100",
    paper_defaults={
        "dataset": {"name": "mnist"},
        "training": {
            "optimizer": "adam",
            "learning_rate": 1.2e-3,
            "batch_size": 60,
            "iterations": 50_000,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.0, "fc": 0.2, "output": 0.1}},
    },
    layer_kinds=("fc", "output"),
    # Hand-written batched matmuls: 0.69-0.89x per member of one at a time on a CPU with two
    # threads, 1.06-1.16x with one (lth_core.train.stacked.MIN_CPU_THREADS); on a GPU it pays.
    stacking=Stacking(by_default_on=("cpu", "cuda")),
)
